"""Tiled maps with a position prior: tile geometry, selection by prior, lazy loading
with clear errors, localization on the synthetic room, GPS priors."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

import vloc
from vloc.cli import main
from vloc.errors import DataError, MapError, VlocError
from vloc.geometry import pose_errors
from vloc.geometry.geo import GeoRegistration, gps_from_exif
from vloc.localizers import Query
from vloc.localizers.base import Prior
from vloc.localizers.prior import parse_prior, prior_from_exif, simulated_priors
from vloc.maps.tiles import TileGrid, TiledMapConfig, make_grid

GRID = TileGrid(origin=(0.0, 0.0), size=150.0, overlap=25.0, axes=(0, 1), shape=(3, 2))


def test_points_near_a_border_belong_to_both_tiles():
    g = np.array([[75.0, 75.0], [160.0, 75.0], [140.0, 75.0], [200.0, 75.0], [449.0, 299.0]])
    tiles = GRID.tiles_of_points(g)
    assert list(tiles[(0, 0)]) == [0, 1, 2]          # 160 is within the 25 overlap of tile 0
    assert list(tiles[(1, 0)]) == [1, 2, 3]
    assert list(tiles[(2, 1)]) == [4]
    assert (1, 1) not in tiles and (0, 1) not in tiles


def test_tile_selection_inside_on_a_border_and_outside():
    assert GRID.tiles_touching([75.0, 75.0], 10.0) == [(0, 0)]                   # inside one tile
    assert sorted(GRID.tiles_touching([150.0, 75.0], 5.0)) == [(0, 0), (1, 0)]   # on the border
    assert sorted(GRID.tiles_touching([150.0, 150.0], 5.0)) == [(0, 0), (0, 1), (1, 0), (1, 1)]  # corner
    assert GRID.tiles_touching([150.0, 75.0], 5.0)[0] in ((0, 0), (1, 0))
    assert GRID.tiles_touching([-100.0, 75.0], 50.0) == []                       # outside every tile
    assert GRID.tiles_touching([-100.0, 75.0], 80.0) == [(0, 0)]                 # reaches the overlap
    assert GRID.tiles_touching([1000.0, 1000.0], 10.0) == []


def test_grid_covers_the_points():
    g = np.random.default_rng(0).uniform([-10, 5], [500, 160], (1000, 2))
    grid = make_grid(g, 150.0, 25.0, (0, 1))
    assert grid.shape == (4, 2)
    tiles = grid.tiles_of_points(g)
    assert set(np.concatenate(list(tiles.values()))) == set(range(1000))


def test_tiled_config_checks():
    with pytest.raises(VlocError, match="tile_overlap"):
        TiledMapConfig(tile_size=10, tile_overlap=6)
    with pytest.raises(VlocError, match="ground_axes"):
        TiledMapConfig(ground_axes="xx")
    with pytest.raises(DataError, match="out of range"):
        TiledMapConfig(geo_registration={"lat": 95.0, "lon": 0.0})


def test_prior_parsing():
    assert parse_prior("1,2,3").center == (1.0, 2.0) and parse_prior("1,2,3").radius == 3.0
    assert parse_prior("1, 2, 3, 4").center == (1.0, 2.0, 3.0)
    for bad in ("1,2", "a,b,c", "1,2,3,4,5", "1,2,-1", "1,nan,2"):
        with pytest.raises(DataError):
            parse_prior(bad)


def test_gps_prior_from_exif(tmp_path):
    exif = Image.Exif()
    exif[0x8825] = {1: "N", 2: (47.0, 22.0, 31.8), 3: "E", 4: (8.0, 32.0, 15.0), 5: b"\x00", 6: 431.5}
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "q.jpg", exif=exif)
    lat, lon, alt = gps_from_exif(tmp_path / "q.jpg")
    assert lat == pytest.approx(47 + 22 / 60 + 31.8 / 3600) and lon == pytest.approx(8 + 32 / 60 + 15 / 3600)
    geo = GeoRegistration(lat=47.375, lon=8.5375, alt=430.5)
    prior = prior_from_exif(tmp_path / "q.jpg", geo, radius=20.0)
    # 1.8 arc-seconds north is 55.6 m; the longitude is the origin's; 1 m up
    assert prior.center[0] == pytest.approx(0.0, abs=0.01)
    assert prior.center[1] == pytest.approx(1.8 / 3600 * 111_195, rel=0.005)
    assert prior.center[2] == pytest.approx(1.0, abs=0.01)
    rotated = GeoRegistration(lat=47.375, lon=8.5375, alt=430.5, yaw_deg=90.0)
    assert rotated.map_from_wgs84(lat, lon, alt)[0] == pytest.approx(prior.center[1], rel=1e-6)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "nogps.jpg")
    with pytest.raises(DataError, match="no EXIF GPS"):
        prior_from_exif(tmp_path / "nogps.jpg", geo, 20.0)


@pytest.fixture(scope="module")
def tiled_map(room, tmp_path_factory):
    """The 6 x 5 m room cut into 3 m tiles with 1 m overlap (4 x 3 tiles)."""
    out = tmp_path_factory.mktemp("maps") / "tiled"
    cfg = TiledMapConfig(tile_size=3.0, tile_overlap=1.0)
    manifest = vloc.build_map(room, out, cfg, method="tiled", split="official", progress=False)
    return out, manifest


def test_tiled_localization_with_priors(room, tiled_map):
    out, manifest = tiled_map
    assert manifest["method"] == "tiled" and manifest["stats"]["tiles"] >= 6
    assert manifest["stats"]["descriptor_bytes"] == 32
    loc = vloc.load_localizer(out)
    assert loc.cache.loads == 0                                    # lazy: nothing loaded yet
    fold = room.split("official")[0]
    priors = simulated_priors(fold.query, radius=1.0, noise=0.2, seed=0)
    errs = []
    for q in fold.query:
        est = loc.localize(Query(q.name, image_path=q.image_path, camera=q.camera), priors[q.name])
        assert 1 <= len(est.details["tiles"]) <= 9
        assert 0 < est.details["query_tile_mb"] <= est.details["loaded_tile_mb"]
        assert est.success, est.reason
        errs.append(pose_errors(est.cam_from_world, q.cam_from_world))
    errs = np.array(errs)
    assert np.median(errs[:, 0]) < 0.01 and np.median(errs[:, 1]) < 0.1      # 1 cm, 0.1 deg
    assert errs[:, 0].max() < 0.05
    assert loc.cache.loads < 6 * 9                                 # tiles are reused between queries


def test_tiled_failures_are_reported(room, tiled_map):
    out, _ = tiled_map
    loc = vloc.load_localizer(out)
    q = room.split("official")[0].query[0]
    query = Query(q.name, image_path=q.image_path, camera=q.camera)
    est = loc.localize(query)
    assert not est.success and "needs a position prior" in est.reason
    est = loc.localize(query, Prior((50.0, 50.0), 5.0))
    assert not est.success and "outside every tile" in est.reason and loc.cache.loads == 0
    # a prior in the map but far from the true position: any pose found is rejected
    c = q.cam_from_world.center
    far = (c[0] + 5.0, c[1]) if c[0] < 0 else (c[0] - 5.0, c[1])
    est = loc.localize(query, Prior(far, 0.5))
    assert not est.success


def test_truncated_or_missing_tile_file_gives_a_clear_error(room, tiled_map, tmp_path):
    src, _ = tiled_map
    broken = tmp_path / "broken"
    shutil.copytree(src, broken)
    tiles = json.loads((broken / "tiles.json").read_text())["tiles"]
    q = room.split("official")[0].query[0]
    query = Query(q.name, image_path=q.image_path, camera=q.camera)
    prior = Prior(tuple(q.cam_from_world.center), 0.5)
    loc = vloc.load_localizer(broken)
    key = loc.select_tiles(prior)[0]
    path = broken / tiles[key]["file"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(MapError, match="truncated"):
        loc.localize(query, prior)
    path.write_bytes(b"\0" * tiles[key]["bytes"])                 # right size, corrupt content
    with pytest.raises(MapError, match="corrupt tile file"):
        vloc.load_localizer(broken).localize(query, prior)
    path.unlink()
    with pytest.raises(MapError, match="missing"):
        vloc.load_localizer(broken).localize(query, prior)


def test_cli_localize_with_prior_and_evaluate_tiled(room, tiled_map, tmp_path, capsys):
    out, _ = tiled_map
    q = room.split("official")[0].query[1]
    c = q.cam_from_world.center
    cam = f"{q.camera.model} {q.camera.width} {q.camera.height} " + " ".join(map(str, q.camera.params))
    assert main(["localize", str(out), str(q.image_path), "--camera", cam,
                 "--prior", f"{c[0]:.3f},{c[1]:.3f},1.0"]) == 0
    assert "OK" in capsys.readouterr().out
    assert main(["localize", str(out), str(q.image_path), "--camera", cam, "--prior", "90,90,1"]) == 3
    assert "outside every tile" in capsys.readouterr().out
    assert main(["localize", str(out), str(q.image_path), "--prior-exif"]) == 2
    assert "geo-registered" in capsys.readouterr().err
    js = tmp_path / "r.json"
    assert main(["evaluate", str(out), str(room.root), "--split", "official", "--method", "tiled",
                 "--prior-radius", "1.0", "--prior-noise", "0.2", "--json", str(js), "-q"]) == 0
    doc = json.loads(js.read_text())
    assert doc["meta"]["prior"] == {"radius": 1.0, "noise": 0.2}
    assert all("tiles" in r["details"] for r in doc["queries"])
    assert sum(r["success"] for r in doc["queries"]) >= 5
