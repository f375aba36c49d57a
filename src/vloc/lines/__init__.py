"""Privacy-preserving localization with line clouds (issue 6): maps whose 3D points are
lifted to random lines (Speciale et al. CVPR 2019; paired-point lifting, Lee et al.
CVPR 2023), the absolute pose from 2D point to 3D line matches (PoseLib's 6-point
generalized solver inside our own LO-RANSAC), and the attack that recovers the points
from the lines (Chelani et al. CVPR 2021) with its measurement. See docs/lines.md.

`cloud`, `solver`, `ransac`, `attack` are numpy / scipy / PoseLib only; `mapping`
builds maps (maps level); `privacy` drives localizers and evaluation (api level)."""
from .attack import AttackConfig, AttackResult, recover_points, recovery
from .cloud import LineCloud, lift_points, line_cloud_from_points, read_lines, write_lines
from .mapping import LineMapConfig, build_lines_map, convert_structure_map
from .ransac import LineRansacConfig, LineRansacResult, ransac_lines

__all__ = [
    "AttackConfig", "AttackResult", "LineCloud", "LineMapConfig", "LineRansacConfig", "LineRansacResult",
    "build_lines_map", "convert_structure_map", "lift_points", "line_cloud_from_points", "ransac_lines",
    "read_lines", "recover_points", "recovery", "write_lines",
]
