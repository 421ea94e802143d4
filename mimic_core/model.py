"""The musculoskeletal model: loading, name checks, and keypoint kinematics."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import mujoco
import numpy as np

from mimic_core.errors import ModelError

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_XML = PACKAGE_DIR / "models" / "mouse_forelimb.xml"

JOINT_NAMES = ("sh_elv", "sh_extension", "sh_rotation", "elbow")
MUSCLE_NAMES = (
    "Pec_C", "Lat", "PD", "AD", "MD",
    "Triceps_Lateral", "Triceps_Long", "Brachialis", "Biceps_Long",
)
KEYPOINT_NAMES = ("Shoulder", "Elbow", "Wrist")
DEFAULT_KEYPOINT_MAP = {"Shoulder": "scapula", "Elbow": "elbow", "Wrist": "wrist_body"}


def load_model(xml: str | os.PathLike | None = None) -> mujoco.MjModel:
    """Compile an MJCF file (the default forelimb when `xml` is None)."""
    path = Path(xml) if xml else DEFAULT_MODEL_XML
    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    try:
        return mujoco.MjModel.from_xml_path(str(path))
    except ValueError as e:  # mujoco reports XML and compile errors as ValueError
        raise ModelError(f"{path}: cannot compile the model: {e}") from e


def names(model: mujoco.MjModel, obj: mujoco.mjtObj, count: int) -> list[str]:
    """All names of one kind of MuJoCo object, in id order."""
    return [mujoco.mj_id2name(model, obj, i) or "" for i in range(count)]


def body_names(model: mujoco.MjModel) -> list[str]:
    return names(model, mujoco.mjtObj.mjOBJ_BODY, model.nbody)


def joint_names(model: mujoco.MjModel) -> list[str]:
    return names(model, mujoco.mjtObj.mjOBJ_JOINT, model.njnt)


def actuator_names(model: mujoco.MjModel) -> list[str]:
    return names(model, mujoco.mjtObj.mjOBJ_ACTUATOR, model.nu)


def _lookup(model: mujoco.MjModel, obj: mujoco.mjtObj, name: str, kind: str, available: list[str]) -> int:
    i = mujoco.mj_name2id(model, obj, name)
    if i < 0:
        raise ModelError(f"the model has no {kind} named '{name}'; it has: {', '.join(a for a in available if a)}")
    return i


def keypoint_bodies(model: mujoco.MjModel, keypoint_map: Mapping[str, str]) -> np.ndarray:
    """Body ids for each keypoint of `keypoint_map` (keypoint name -> body name), in map order."""
    if not keypoint_map:
        raise ModelError("the keypoint map is empty: map each keypoint name to a body of the model")
    available = body_names(model)
    return np.array(
        [_lookup(model, mujoco.mjtObj.mjOBJ_BODY, str(b), "body", available) for b in keypoint_map.values()],
        dtype=np.int64,
    )


def actuator_ids(model: mujoco.MjModel, muscles: list[str] | tuple[str, ...]) -> np.ndarray:
    """Actuator ids for the named muscles; a missing name lists what the model has."""
    available = actuator_names(model)
    return np.array([_lookup(model, mujoco.mjtObj.mjOBJ_ACTUATOR, m, "actuator", available) for m in muscles])


@dataclass(frozen=True)
class ForelimbModel:
    """A compiled model with its keypoint attachment resolved."""

    model: mujoco.MjModel
    xml: str
    keypoint_names: tuple[str, ...]
    keypoint_body_ids: np.ndarray

    @property
    def joint_names(self) -> list[str]:
        return joint_names(self.model)

    @property
    def muscle_names(self) -> list[str]:
        return actuator_names(self.model)

    @property
    def joint_range(self) -> np.ndarray:
        """(nq, 2) joint limits in radians (hinge and slide joints only)."""
        return self.model.jnt_range.copy()


def load_forelimb(xml: str | os.PathLike | None, keypoint_map: Mapping[str, str]) -> ForelimbModel:
    """Load a model and resolve its keypoint map. The pipeline expects hinge/slide joints only."""
    model = load_model(xml)
    if model.njnt == 0:
        raise ModelError(f"{xml or DEFAULT_MODEL_XML}: the model has no joints: nothing to register or control")
    if model.nq != model.nv:
        raise ModelError(f"{xml}: expected only hinge/slide joints (nq == nv), got nq={model.nq}, nv={model.nv}")
    ids = keypoint_bodies(model, keypoint_map)
    return ForelimbModel(model, str(xml or DEFAULT_MODEL_XML), tuple(keypoint_map), ids)


def keypoint_positions(fm: ForelimbModel, qpos: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """World positions (frames, K, 3) of keypoints at `offsets` (K, 3) in their bodies' frames."""
    m = fm.model
    d = mujoco.MjData(m)
    qpos = np.atleast_2d(qpos)
    out = np.empty((qpos.shape[0], len(fm.keypoint_body_ids), 3))
    for t, q in enumerate(qpos):
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        xpos = d.xpos[fm.keypoint_body_ids]
        xmat = d.xmat[fm.keypoint_body_ids].reshape(-1, 3, 3)
        out[t] = xpos + np.einsum("kij,kj->ki", xmat, offsets)
    return out
