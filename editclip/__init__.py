"""editclip: interpret and edit CLIP image encoders through the direct effects of their parts.

The public API is listed here explicitly; everything else is internal.
"""

from .backbone import Backbone as Backbone
from .backbone import VitShape as VitShape
from .backbone import load as load
from .decompose import Decomposition as Decomposition
from .decompose import decompose as decompose
from .errors import EditclipError as EditclipError
from .errors import UnsupportedModelError as UnsupportedModelError

__version__ = "0.1.0"
