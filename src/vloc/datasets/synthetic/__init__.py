"""The embedded default scene of vloc: a textured world rendered by numpy ray casting.

vloc ships no data; `vloc demo` and many tests use the scene generated here. Three
independent layers keep later extensions (a street-grid city, lighting / night /
season conditions) local:

- geometry: a `World` is a list of textured rectangles (`Quad`s) plus the free
  space a camera may move in. `room_world()` builds a room (floor, ceiling, four
  walls) with boxes and a pillar inside, so the scene is truly 3D.
- texture: every quad carries real photographs bundled with scikit-image (no
  download), tiled at a physical texel size. Each texture tile picks one of the
  quad's photos and a mirroring from a hash of its tile index, so repetitions are
  rare. Sampling is trilinear from a mip pyramid, the level chosen from the
  analytic pixel footprint (anti-aliased, so SIFT features are stable).
- shading: `shade()` applies a `Lighting` (ambient + Lambertian point and
  directional lights) to the sampled albedo; view independent, no shadows.

World coordinates are metric with z up (the floor of the room is z = 0). Camera
poses are `cam_from_world` with OpenCV axes, and rays go through pixel centres in
COLMAP's convention (pixel (i, j) has its centre at (j + 0.5, i + 0.5)).

The mapping frames follow a two-loop path with queries near it (layout "path"),
or spread over the free space with queries drawn independently of their number
(layout "cover", `cover_poses`).

`render()` gives an RGB image and the z-depth (along the optical axis, metres) of
the nearest surface per pixel; `generate_scene()` writes a whole scene (mapping and
query frames, depth, manifest) that the "synthetic" importer reads back.

`city_world()` builds a street grid of at least 1 km^2 with street-level poses
(`city_mapping_poses`, `city_query_poses`); its finite view distance lets the
renderer cull all but the nearby quads, and `generate_city()` writes 100k-frame
scenes in forked workers, restartably.
"""
# also re-exported (not in __all__, as before the split into modules): DEPTH_SCALE, MANIFEST,
# depth_to_png, EDGE_EPS, NEAR, RENDER_VERSION
from .city import CityWorld, Street, city_mapping_poses, city_query_poses, city_world
from .city_scene import CityConfig, city_scene_poses, generate_city
from .generate import (DEPTH_SCALE, MANIFEST, SyntheticConfig, build_world, depth_to_png,
                       generate_scene, scene_poses)
from .rendering import EDGE_EPS, NEAR, RENDER_VERSION, raycast, render
from .textures import PHOTOS, TextureAtlas, load_photo, texture_atlas
from .trajectory import cover_poses, look_at, pose_from_view, query_poses, room_trajectory
from .world import (Block, DirectionalLight, Lighting, PointLight, Quad, World, box_quads, rect,
                    room_world, shade)

__all__ = [
    "PHOTOS", "Block", "CityConfig", "CityWorld", "DirectionalLight", "Lighting", "PointLight",
    "Quad", "Street", "SyntheticConfig", "TextureAtlas", "World", "box_quads", "build_world",
    "city_mapping_poses", "city_query_poses", "city_scene_poses", "city_world", "cover_poses",
    "generate_city",
    "generate_scene", "load_photo",
    "look_at", "pose_from_view", "query_poses", "raycast", "rect", "render", "room_trajectory",
    "room_world", "scene_poses", "shade", "texture_atlas",
]
