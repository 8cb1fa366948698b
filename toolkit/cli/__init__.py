"""evit's command lines: each module parses its arguments, calls one library function and
prints the result; none imports another."""

import os

# entry points only: litert-torch's per-stage progress lines and its C++ converter's INFO lines
# off, unless the user asks for them (LITERT_TORCH_SHOW_PROGRESS=y, TF_CPP_MIN_LOG_LEVEL=0)
os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
