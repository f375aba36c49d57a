"""The `vloc` command. Thin: each subcommand parses flags and calls the Python API.
A user's mistake is reported in one line (exit code 2), never as a traceback."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

from .errors import DataError, VlocError

EXIT_USER_ERROR = 2
EXIT_SOME_FAILED = 3
EXIT_SYSTEM_ERROR = 4      # the system refused a read or write


def _map_config(args):
    """The map config of the chosen method, from its defaults, a TOML file and flags."""
    import tomllib

    from .configs import check_config_types
    from .localizers.registry import get_method
    args.method = args.method or "structure"
    config_type = get_method(args.method).config_type
    overrides = {}
    for key in ("features", "resize_max", "max_keypoints", "matcher", "pairs", "points", "tile_size", "loss", "beta",
                "trunk", "epochs", "max_minutes"):
        v = getattr(args, key, None)
        if v is not None:
            if key not in config_type.__dataclass_fields__:
                raise VlocError(f"--{key.replace('_', '-')} does not apply to method {args.method}")
            overrides[key] = v
    data = {}
    if getattr(args, "config", None):
        try:
            data = tomllib.loads(Path(args.config).read_text())
        except FileNotFoundError:
            raise VlocError(f"config file not found: {args.config}") from None
        except tomllib.TOMLDecodeError as e:
            raise VlocError(f"bad TOML in {args.config}: {e}") from None
        where = "map" if "map" in data else ""
        data = data.get("map", data)
        check_config_types(config_type, data, where)
    return config_type.from_dict({**data, **overrides})


def cmd_info(args) -> int:
    from .datasets import Scene, available_splits
    scene = Scene.load(args.path, args.format)
    s = scene.summary()
    if args.json:
        print(json.dumps({**s, "available_splits": available_splits(scene)}, indent=2))
        return 0
    print(f"{s['name']}  ({s['format']}, {s['root']})")
    print(f"  frames: {s['frames']}  with image: {s['with_image']}  with pose: {s['with_pose']}  "
          f"with depth: {s['with_depth']}")
    spread = f"  camera spread: {scene.scale():.3g}" if s["with_pose"] >= 2 else ""
    print(f"  units: {'metres' if s['metric'] else 'arbitrary (no metric scale)'}{spread}")
    prior = " (priors, refined by structure-from-motion)" if all(f.camera_prior for f in scene) else ""
    print(f"  cameras ({len(s['cameras'])}){prior}:")
    for c in s["cameras"][:5]:
        print(f"    {c}")
    if len(s["cameras"]) > 5:
        print(f"    ... {len(s['cameras']) - 5} more")
    print(f"  splits: {', '.join(available_splits(scene))}")
    for name in s["splits"]:
        m, q = scene.official_splits[name]
        print(f"    {name}: {len(m)} mapping / {len(q)} query")
    for n in s["notes"]:
        print(f"  note: {n}")
    return 0


def cmd_map(args) -> int:
    from .api import build_map
    t = time.perf_counter()
    manifest = build_map(args.data, args.output, _map_config(args), method=args.method, split=args.split,
                         fold=args.fold, overwrite=args.overwrite, progress=not args.quiet)
    st = manifest["stats"]
    what = f"{st['images']} images"
    if "points" in st:
        what += (f", {st['points']} points (mean track {st['mean_track_length']:.2f}, "
                 f"reprojection {st['mean_reprojection_error']:.2f} px)")
    print(f"{manifest['method']} map written to {args.output}: {what}, {time.perf_counter() - t:.1f} s")
    return 0


def cmd_serve(args) -> int:
    from .service import serve
    serve(args.map, args.host, args.port, args.max_mb, args.quiet)
    return 0


def cmd_localize(args) -> int:
    from .api import load_localizer
    from .evaluation import write_pose_file
    from .localizers import Query
    from .maps.depth import read_depth_image
    from .geometry.exif import EXIF, camera_option, query_camera
    camera = camera_option(args.camera)
    args.images = _expand_folders(args.images, "image")
    args.depth = _expand_folders(args.depth, "depth") if args.depth else args.depth
    _check_unique_names(args.images, args.output)
    depths = _depth_paths(args)
    localizer = load_localizer(args.map)
    if args.depth:
        _warn_unused_depth(args.map)
    prior_of = _prior_source(args, localizer)
    poses, records, failed = {}, [], 0
    for path, depth in zip(args.images, depths):
        path = Path(path)
        t = time.perf_counter()
        try:
            q = Query(path.name, image_path=path, camera=query_camera(camera, path),
                      depth=None if depth is None else read_depth_image(depth, args.depth_scale))
            est = localizer.localize(q, prior_of(path))
        except DataError as e:          # a bad image fails this query, not the others
            from .localizers import Estimate
            est = Estimate.failed(str(e))
        dt = time.perf_counter() - t
        rec = {"name": str(path), **est.to_dict(), "seconds": dt}
        if est.success:
            p = est.cam_from_world
            poses[path.name] = p
            if camera is None and est.camera is not None:
                rec["estimated_camera"] = str(est.camera)
            focal = f", f={est.camera.fx:.1f}" if camera in (None, EXIF) and est.camera else ""
            support = f"inliers {est.inliers}/{est.correspondences}" if est.correspondences else "no matches"
            print(f"{path}: OK  {support}{focal}  centre "
                  f"{' '.join(f'{v:.4f}' for v in p.center)}  {dt:.2f} s")
        else:
            failed += 1
            print(f"{path}: FAILED  {est.reason}  {dt:.2f} s")
        records.append(rec)
    if args.output:
        write_pose_file(args.output, poses)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(records, indent=2))
    return EXIT_SOME_FAILED if failed else 0


def _expand_folders(paths: list[str], what: str) -> list[str]:
    """Each folder among `paths` replaced by its image files, sorted by name."""
    from .imageio import IMAGE_SUFFIXES
    out = []
    for p in paths:
        if Path(p).is_dir():
            files = sorted(str(f) for f in Path(p).iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise VlocError(f"{what} folder {p} holds no image ({', '.join(IMAGE_SUFFIXES)})")
            out += files
        else:
            out.append(p)
    return out


def _check_unique_names(images: list[str], pose_file) -> None:
    """The pose file names each image by its file name: two of one name would clash."""
    if not pose_file:
        return
    seen = set()
    for p in images:
        name = Path(p).name
        if name in seen:
            raise VlocError(f"two query images are named {name}: the pose file (-o) names each image by its "
                            "file name")
        seen.add(name)


def _warn_unused_depth(map_dir) -> None:
    """--depth given for a map whose method localizes from colour alone."""
    from .localizers.registry import map_method
    method = map_method(map_dir)
    if not method.uses_depth:
        warnings.warn(f"method {method.name} localizes from colour alone: --depth is ignored", stacklevel=2)


def _depth_paths(args) -> list:
    """Per image its depth image (--depth, in the images' order) or None."""
    if not args.depth:
        return [None] * len(args.images)
    if len(args.depth) != len(args.images):
        raise VlocError(f"--depth needs one depth image per query image: {len(args.images)} images, "
                        f"{len(args.depth)} depth images")
    if not args.depth_scale > 0:
        raise VlocError(f"--depth-scale must be > 0, got {args.depth_scale}")
    return [Path(d) for d in args.depth]


def _prior_source(args, localizer):
    """path -> Prior or None, from --prior (one for all images) or --prior-exif."""
    from .localizers.prior import parse_prior, prior_from_exif
    if args.prior and args.prior_exif:
        raise VlocError("give --prior or --prior-exif, not both")
    if args.prior:
        prior = parse_prior(args.prior)
        return lambda path: prior
    if args.prior_exif:
        geo = getattr(localizer, "geo", None)
        if geo is None:
            raise VlocError("--prior-exif needs a geo-registered map (map option geo_registration = "
                            "{lat, lon, alt, yaw_deg, scale})")
        return lambda path: prior_from_exif(path, geo, args.prior_radius)
    return lambda path: None


def cmd_evaluate(args) -> int:
    from .datasets import Scene
    from .evaluation import summary_row, markdown_table, to_json, versions, write_report
    from .evaluation.report import dumps, failure_summary
    from .evaluation.run import evaluate
    if len(args.paths) == 2:
        map_dir, data = args.paths
    elif len(args.paths) == 1:
        map_dir, data = None, args.paths[0]
    else:
        raise VlocError("usage: vloc evaluate [MAP] DATA --split NAME")
    if args.method is None and map_dir is not None:        # the map's own method
        from .localizers.registry import map_method
        args.method = map_method(map_dir).name
    scene = Scene.load(data, args.format)
    config = _map_config(args)
    run = evaluate(scene, args.split, args.method, config, map_dir=map_dir, preset=args.preset,
                   known_intrinsics=not args.unknown_intrinsics, prior_radius=args.prior_radius,
                   prior_noise=args.prior_noise, progress=not args.quiet)
    run.meta["map"] = str(map_dir) if map_dir else None
    if run.meta.get("alignment"):
        a = run.meta["alignment"]
        print(f"map made by structure-from-motion: poses aligned to the ground truth by a similarity "
              f"from {a['images']} map images (scale {a['scale']:.4g}, centres RMS {a['rms']:.3g} after alignment)")
    row = summary_row(run.summary, run.meta["preset"], run.meta["scene_scale"])
    print(markdown_table([{"scene": scene.name, "method": args.method, "split": args.split, **row}]))
    reasons = failure_summary(run.results)
    if reasons:
        print("failed queries:\n  " + "\n  ".join(reasons))
    vers = versions()
    if args.json:
        doc = to_json(run.results, run.summary, run.config, vers, run.meta)
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(dumps(doc))
    if args.report:
        write_report(args.report, run.results, run.summary, config=run.config, versions=vers, meta=run.meta)
        print(f"report written to {args.report}")
    return 0


def cmd_privacy(args) -> int:
    from .evaluation import markdown_table
    from .lines.attack import AttackConfig
    from .lines.privacy import run_privacy, study_table
    if args.data is None and args.structure_map is None:
        raise VlocError("give a dataset (DATA --split NAME) or --structure-map MAP")
    if args.data is not None and args.split is None:
        raise VlocError("--split is needed with a dataset (its mapping frames make the map, its queries are "
                        "localized)")
    map_config = None
    if args.structure_map is None:
        args.method = "structure"
        map_config = _map_config(args)
    doc = run_privacy(Path(args.output), data=args.data, split=args.split or "all", fold=args.fold,
                      structure_map=args.structure_map, map_config=map_config, sparsities=args.sparsity,
                      lifting=args.lifting, seed=args.seed, keep=args.keep,
                      attack=AttackConfig(neighbours=args.neighbours), max_queries=args.max_queries,
                      overwrite=args.overwrite, progress=not args.quiet)
    leak = doc["leak_check"]
    stored = ("no 3D point stored" if leak["matches"] == 0 and not leak["model"] else
              f"TRUE POINTS FOUND IN THE MAP ({leak['matches']} values{', a COLMAP model' if leak['model'] else ''})")
    print(f"line-cloud map written to {doc['map']}: {doc['lines']} lines ({doc['lifting']} lifting) from "
          f"{doc['points']} points; {stored} (checked {leak['values_checked']} values in {leak['arrays']} arrays)")
    if not doc["queries"]:
        print("no query with a pose in this split: localization not measured")
    print(markdown_table(study_table(doc["sparsity"], doc["scene_scale"], doc["preset"] == "relative",
                                     doc["metric"] is not False)))
    print(f"JSON: {Path(args.output) / 'privacy.json'}  plot: {Path(args.output) / 'privacy.png'}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo
    return run_demo(out=args.out, quick=args.quick, progress=not args.quiet)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="vloc", description="Visual localization: the 6-DoF pose of a camera "
                                 "from one image against a map of a known scene.")
    ap.add_argument("--version", action="version", version=f"vloc {__import__('vloc').__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="what a dataset path holds: format, frames, cameras, poses, depth, splits")
    p.add_argument("path")
    p.add_argument("--format", help="dataset format (default: detected)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    def map_options(p):
        p.add_argument("--method",
                       help="structure (default; for evaluate with a map: the map's own), hierarchical, "
                            "retrieval-top1, retrieval-interpolated, tiled, posenet, mapnet, lines, "
                            "forest, scr, scr-dsac, featuremetric")
        p.add_argument("--config", help="TOML file with map options ([map] table)")
        p.add_argument("--features", help="local features: colmap-sift (default), sift (OpenCV), rootsift, aliked, disk, xfeat")
        p.add_argument("--resize-max", type=int, help="longer image side for features (default 1600)")
        p.add_argument("--max-keypoints", type=int, help="keypoints per image (default 8192)")
        p.add_argument("--matcher", choices=["mnn-ratio", "lightglue"],
                       help="2D-2D matching of map image pairs: mutual NN + ratio (default) or LightGlue "
                            "(aliked, disk)")
        p.add_argument("--pairs", choices=["auto", "exhaustive", "poses", "retrieval"],
                       help="map image pairs to match: all (exhaustive), nearest by pose, or most similar "
                            "by retrieval (default auto: all up to 40 images, else poses, or retrieval "
                            "without poses)")
        p.add_argument("--points", choices=["auto", "triangulate", "depth", "sfm"],
                       help="3D points from known poses, RGB-D depth, or SfM (default: auto)")
        p.add_argument("--tile-size", type=float, help="tiled maps: tile side in map units (default 150)")
        p.add_argument("--loss", choices=["hand-tuned", "learned", "reprojection"],
                       help="posenet, mapnet: training loss (default hand-tuned)")
        p.add_argument("--beta", type=float, help="posenet, mapnet: hand-tuned weight of the rotation error (default 0.3)")
        p.add_argument("--trunk", choices=["resnet", "aliked"],
                       help="posenet, mapnet: resnet from scratch (default) or frozen pretrained ALIKED features")
        p.add_argument("--epochs", type=int, help="posenet, mapnet: training epochs (default 200)")
        p.add_argument("--max-minutes", type=float,
                       help="posenet, mapnet: training time budget in minutes (default: none)")
        p.add_argument("--format", help="dataset format (default: detected)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("map", help="build a map from a dataset's mapping frames")
    p.add_argument("data")
    p.add_argument("-o", "--output", required=True, help="map directory to write")
    p.add_argument("--split", default="all", help="split whose mapping frames to use (default: all)")
    p.add_argument("--fold", type=int, default=0, help="fold of the split (leave-one-out)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the output if it is a vloc map (or an empty folder)")
    map_options(p)
    p.set_defaults(func=cmd_map)

    p = sub.add_parser("localize", help="localize query images against a map")
    p.add_argument("map")
    p.add_argument("images", nargs="+", help="query images, or folders of them (their images sorted by name)")
    p.add_argument("--camera", help="'MODEL WIDTH HEIGHT PARAMS...' (COLMAP), or 'exif' (each image's EXIF "
                   "35 mm focal length, principal point at the centre); unknown focal length if omitted")
    p.add_argument("--depth", nargs="+", metavar="DEPTH",
                   help="depth images (or folders of them) registered to the query images, one per "
                        "image in the same order (RGB-D queries: forest, scr, scr-dsac use them)")
    p.add_argument("--depth-scale", type=float, default=0.001,
                   help="depth value x this = metres (default 0.001: 16-bit millimetres)")
    p.add_argument("-o", "--output", help="pose file (name qw qx qy qz tx ty tz, world-to-camera)")
    p.add_argument("--json", help="per-query details as JSON")
    p.add_argument("--prior", help="position prior for every image: x,y,radius or x,y,z,radius (map units)")
    p.add_argument("--prior-exif", action="store_true",
                   help="position prior from each image's EXIF GPS (the map must be geo-registered)")
    p.add_argument("--prior-radius", type=float, default=30.0, help="radius of EXIF priors in metres (default 30)")
    p.set_defaults(func=cmd_localize, outputs=(("output", "file", "-o"), ("json", "file", "--json")))

    p = sub.add_parser("evaluate", help="localize a split's queries and compare with ground truth")
    p.add_argument("paths", nargs="+", metavar="[MAP] DATA")
    p.add_argument("--split", required=True)
    p.add_argument("--preset", help="thresholds: indoor, outdoor, relative (default: from the scene)")
    p.add_argument("--unknown-intrinsics", action="store_true", help="estimate the query focal length")
    p.add_argument("--report", help="directory for results.json, report.md, error_cdf.png, poses.txt")
    p.add_argument("--json", help="write the results JSON here")
    p.add_argument("--prior-radius", type=float,
                   help="give each query a position prior of this radius around its true centre "
                        "(default: 20 for methods that need a prior, else none)")
    p.add_argument("--prior-noise", type=float, default=0.0,
                   help="GPS-like noise added to the prior centres (std per axis, map units; seeded)")
    map_options(p)
    p.set_defaults(func=cmd_evaluate, outputs=(("json", "file", "--json"), ("report", "folder", "--report")))

    p = sub.add_parser("privacy", help="make a line-cloud map (privacy-preserving), run the attack that "
                       "recovers its points and localize the split's queries, at several sparsities")
    p.add_argument("data", nargs="?", help="dataset (its split's mapping frames make the map)")
    p.add_argument("-o", "--output", required=True,
                   help="folder for the line-cloud map (lines/), privacy.json and privacy.png")
    p.add_argument("--split", help="split of DATA (required with DATA)")
    p.add_argument("--fold", type=int, default=0, help="fold of the split (leave-one-out)")
    p.add_argument("--structure-map", help="lift this structure map instead of building one "
                   "(with DATA --split: its queries are localized)")
    p.add_argument("--sparsity", type=float, nargs="+", default=[100, 50, 25, 10, 5, 1],
                   help="percentages of the lines kept (default: 100 50 25 10 5 1)")
    p.add_argument("--lifting", choices=["random", "paired"], default="random",
                   help="one random line per point, or one line through two random points")
    p.add_argument("--keep", type=float, default=1.0, help="fraction of the points lifted into the written map")
    p.add_argument("--seed", type=int, default=0, help="directions, pairing and sparsification")
    p.add_argument("--neighbours", type=int, default=0,
                   help="attack: nearest lines per line (default 0: 5 %% of the lines, 20 to 500)")
    p.add_argument("--max-queries", type=int, help="localize at most this many queries")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the output if it is a vloc map (or an empty folder)")
    p.add_argument("--config", help="TOML file with map options ([map] table)")
    p.add_argument("--features", help="local features (default colmap-sift)")
    p.add_argument("--resize-max", type=int, help="longer image side for features (default 1600)")
    p.add_argument("--max-keypoints", type=int, help="keypoints per image (default 8192)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_privacy, outputs=(("output", "folder", "-o"),))

    p = sub.add_parser("serve", help="a localization service: POST an image to /localize, get its pose "
                       "as JSON (see docs/service.md)")
    p.add_argument("map")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1, this machine only; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="default 8000 (0: any free port)")
    p.add_argument("--max-mb", type=float, default=64.0, help="largest image accepted, in MiB (default 64)")
    p.add_argument("-q", "--quiet", action="store_true", help="no line per request")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo", help="build a map of the embedded synthetic scene, localize its queries, "
                       "print the evaluation")
    p.add_argument("--out", help="keep the scene, map and report here (default: a temporary folder)")
    p.add_argument("--quick", action="store_true", help="a smaller scene")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
    return ap


def _check_output_paths(args) -> None:
    """An output path of the wrong kind fails at once, in one line, not after the work
    (a command's `outputs`: (attribute, 'file' or 'folder', flag))."""
    for attr, kind, flag in getattr(args, "outputs", ()):
        value = getattr(args, attr, None)
        if value is None:
            continue
        if kind == "file" and Path(value).is_dir():
            raise VlocError(f"{flag} {value} is a folder; give a file name")
        if kind == "folder" and Path(value).exists() and not Path(value).is_dir():
            raise VlocError(f"{flag} {value} is a file; give a folder")


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"vloc: warning: {message}\n"


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    previous, warnings.formatwarning = warnings.formatwarning, _one_line_warning   # a note, not a source line
    try:
        _check_output_paths(args)
        code = args.func(args)
        sys.stdout.flush()          # a closed pipe shows here, not in the interpreter's exit
        return code
    except VlocError as e:
        print(f"vloc: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except BrokenPipeError:         # `vloc ... | head`: stop quietly, as other commands do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:            # the system refused a read or write (permissions, disk full, ...)
        if os.environ.get("VLOC_DEBUG"):
            raise
        where = f": {e.filename}" if e.filename else ""
        print(f"vloc: error: {e.strerror or e}{where} (VLOC_DEBUG=1 shows the traceback)", file=sys.stderr)
        return EXIT_SYSTEM_ERROR
    except KeyboardInterrupt:
        print("vloc: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = previous


if __name__ == "__main__":
    sys.exit(main())
