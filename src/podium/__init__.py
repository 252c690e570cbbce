"""podium: the competition training recipe, done right once."""

from pathlib import Path

__version__ = "0.1.0"

# conf/ of the checkout (make install: editable), else the copy inside the wheel (a bundle);
# here, where every module can read it without importing another
_SOURCE_CONF = Path(__file__).resolve().parents[2] / "conf"
CONFIG_DIR = str(_SOURCE_CONF if _SOURCE_CONF.is_dir()
                 else Path(__file__).resolve().parent / "conf")
