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
from .export import OnnxImageEncoder as OnnxImageEncoder
from .export import export_onnx as export_onnx
from .export import load_edit as load_edit
from .export import save_edit as save_edit

__version__ = "0.1.0"
