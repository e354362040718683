"""editclip: interpret and edit CLIP image encoders through the direct effects of their parts.

The public API is listed here explicitly; everything else is internal.
"""

from . import toyworld as toyworld
from ._compile import CompiledEdit as CompiledEdit
from ._compile import compile_edit as compile  # noqa: F401  (editclip.compile(spec, bb), as DESIGN.md names it)
from ._decompose import Decomposition as Decomposition
from ._decompose import decompose as decompose
from ._textspan import TextSpanResult as TextSpanResult
from ._textspan import textspan as textspan
from ._version import __version__ as __version__
from .backbone import Backbone as Backbone
from .backbone import VitShape as VitShape
from .backbone import load as load
from .edited import EditedCLIP as EditedCLIP
from .edited import EditTensors as EditTensors
from .errors import EditclipError as EditclipError
from .errors import UnsupportedModelError as UnsupportedModelError
from .evaluate import group_metrics as group_metrics
from .evaluate import zero_shot_classifier as zero_shot_classifier
from .export import OnnxImageEncoder as OnnxImageEncoder
from .export import export_onnx as export_onnx
from .export import load_edit as load_edit
from .export import save_edit as save_edit
from .runner import run_spec as run_spec
from .spec import EditSpec as EditSpec
from .store import DecompositionStore as DecompositionStore
from .text import encode_texts as encode_texts

