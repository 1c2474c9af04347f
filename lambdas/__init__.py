"""Sources of the pipeline's Lambda functions: one directory per function, and ``common/``,
whose modules every function's deployment package also carries at its root."""

from pathlib import Path

COMMON = Path(__file__).resolve().parent / "common"


def common_modules() -> list[Path]:
    """The shared modules each package carries beside its handler (imported by top-level name)."""
    return sorted(path for path in COMMON.glob("*.py") if path.name != "__init__.py")
