# model_config_pb2.py beside this stub is Triton's ModelConfig schema (model_config.proto) as
# tritonclient ships it, copied verbatim (tests/test_modelconfig.py checks it byte for byte). The
# generated module builds its classes at import time, so mypy sees them only through this stub.
from typing import Any

def __getattr__(name: str) -> Any: ...
