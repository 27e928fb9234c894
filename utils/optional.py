"""Optional packages (OpenVINO, NNCF, TensorRT, ...): imports that name the missing package, and telemetry kept off.

OpenVINO's model converter and NNCF report usage through the ``openvino-telemetry`` package, which treats a
missing consent file as consent. This project sends nothing: ``import_openvino`` and ``import_nncf`` decline
consent for this process before either package is imported (one place; see ``openvino_telemetry_off``).
"""

from __future__ import annotations

import importlib
import logging
from types import ModuleType

from utils.general import UserError

EXTRA_REQUIREMENTS = "requirements-extra.txt"
EDGE_REQUIREMENTS = "requirements-edge.txt"  # the edge formats' converters and runtimes (NCNN, TFLite, MNN, CoreML)


def require(module: str, purpose: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise a one-line UserError saying that ``purpose`` needs ``package``."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UserError(f"{purpose} needs the {package or module} package, which is not installed "
                        f"(it is listed in {EXTRA_REQUIREMENTS})") from e


def require_edge(module: str, purpose: str, package: str | None = None) -> ModuleType:
    """``require`` for the edge formats' packages, which are listed in requirements-edge.txt."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UserError(f"{purpose} needs the {package or module} package, which is not installed "
                        f"(it is listed in {EDGE_REQUIREMENTS})") from e


def openvino_telemetry_off() -> None:
    """Decline OpenVINO telemetry consent for this process, before openvino or nncf create their sender.

    openvino-telemetry decides per process from ``OptInChecker.check`` (the consent file ~/intel/openvino_telemetry;
    a missing file counts as consent for the converter and NNCF). Answering "declined" there keeps every event
    unsent without writing to the user's home; an instance created earlier is switched off too. The global,
    documented opt-out for all OpenVINO tools on a machine is ``opt_in_out --opt_out``.
    """
    try:
        from openvino_telemetry import Telemetry
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:
        return  # without the telemetry package nothing can be sent
    OptInChecker.check = lambda self, *args, **kwargs: ConsentCheckResult.DECLINED
    instance = getattr(Telemetry, "_SingletonMetaClass__single_instance", None)
    if instance is not None:
        instance.consent = False


def import_openvino(purpose: str = "OpenVINO export and inference") -> ModuleType:
    """The ``openvino`` module with telemetry off, or a UserError naming the package."""
    openvino_telemetry_off()
    return require("openvino", purpose)


def import_nncf(purpose: str = "OpenVINO INT8 quantization") -> ModuleType:
    """The ``nncf`` module (post-training quantization) with telemetry off, or a UserError naming the package."""
    openvino_telemetry_off()
    nncf = require("nncf", purpose)
    nncf.set_log_level(logging.WARNING)  # its per-operation INFO lines drown the export log
    return nncf
