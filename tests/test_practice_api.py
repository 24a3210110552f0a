"""The practice simulator through its JSON API (docs/practice.md), on the phantom with its exact anatomy.

A scripted session that takes the plan's own views and places the needle on the plan must score near-perfect; a
needle through the canal must fail with the violation named; bad requests must get a 4xx with a message and
change nothing (state and log file alike).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from needleplan.errors import NeedleplanError  # noqa: E402
from needleplan.practice import prepare_case, read_log, replay  # noqa: E402
from needleplan.practice.server import create_app  # noqa: E402
from needleplan.practice.session import IMAGE_SIZE, Session  # noqa: E402
from shared_data import SHARED_DATA


@pytest.fixture(scope="module")
def case():
    return prepare_case(None, "tfesi", "L4", "left")


@pytest.fixture()
def client(case, tmp_path):
    app = create_app(case, log_dir=tmp_path / "logs")
    with TestClient(app) as test_client:
        test_client.log_dir = tmp_path / "logs"
        yield test_client


def start(client) -> str:
    answer = client.post("/api/sessions", json={"trainee": "Dr. Test"})
    assert answer.status_code == 201, answer.text
    return answer.json()["id"]


def ok(answer, status: int = 200) -> dict:
    assert answer.status_code == status, answer.text
    return answer.json()


def follow_plan(client, sid: str, plan) -> dict:
    """Take each of the plan's views, pick the target's pixel in the trajectory shot, go down that ray to it."""
    trajectory = None
    for view in plan.views:
        pose = {"oblique_deg": view.carm.oblique, "tilt_deg": view.carm.tilt, "pan_left_mm": 0, "pan_cranial_mm": 0}
        if view.name == "Trajectory":  # centre the target, as the plan's view does: the pan puts it on the central ray
            pose |= centring_pan(session_of(client, sid), view.carm.beam_direction, plan.needle.tip_mm)
        ok(client.put(f"/api/sessions/{sid}/carm", json=pose))
        shot = ok(client.post(f"/api/sessions/{sid}/shots", json={}))["shot"]
        if view.name == "Trajectory":
            trajectory = shot
    session_carm = session_of(client, sid).carm_of(trajectory["carm"])
    target_px = session_carm.project(plan.needle.tip_mm[None])
    col, row = float(target_px.col[0]), float(target_px.row[0])
    ok(client.post(f"/api/sessions/{sid}/needle", json={"action": "place", "shot": trajectory["number"],
                                                       "col": col, "row": row}))
    needle = ok(client.get(f"/api/sessions/{sid}"))["needle"]
    distance = float(np.linalg.norm(plan.needle.tip_mm - np.asarray(needle["entry_mm"])))
    while needle["depth_mm"] < distance - 1e-6:
        step = max(0.5, min(10.0, distance - needle["depth_mm"]))
        moved = ok(client.post(f"/api/sessions/{sid}/needle", json={"action": "advance", "mm": step}))
        needle = moved["state"]["needle"]
        if moved["event"] == "bone":  # a bone-contact target: the tip rests on the bone
            break
    ok(client.put(f"/api/sessions/{sid}/carm", json={"preset": "ap"}))
    ok(client.post(f"/api/sessions/{sid}/shots", json={}))
    return ok(client.post(f"/api/sessions/{sid}/finish", json={}))


def centring_pan(session: Session, beam: np.ndarray, point: np.ndarray) -> dict:
    """The pan (left, cranial) that puts ``point`` on the central ray: point - (iso + pan) is along the beam."""
    # unknowns (left, cranial, t): iso + (left, 0, cranial) + t beam = point
    matrix = np.column_stack([[1.0, 0, 0], [0, 0, 1.0], beam])
    left, cranial, _ = np.linalg.solve(matrix, point - session.case.isocenter_mm)
    return {"pan_left_mm": float(left), "pan_cranial_mm": float(cranial)}


def session_of(client, sid: str) -> Session:
    """The server's Session object (for the geometry a test needs to pick pixels)."""
    return client.app.state.sessions.get(sid)[0]


def test_task_names_the_procedure_and_limits(client, case):
    task = ok(client.get("/api/task"))
    assert task["mode"] == "practice"
    assert (task["procedure"], task["level"], task["side"]) == ("tfesi", "L4", "left")
    assert "L4" in task["in_words"] and "transforaminal" in task["in_words"]
    assert task["limits"]["oblique_deg"] == [-95.0, 95.0]
    assert task["presets"]["lateral"]["oblique_deg"] == 90  # toward the task's side
    assert task["needle"]["length_mm"] == case.plan.needle_choice.length_mm


def test_following_the_plan_scores_near_perfect(client, case):
    sid = start(client)
    finished = follow_plan(client, sid, case.plan)
    score = finished["score"]
    assert score["passed"] and score["grade"] == "excellent", score["summary"]
    assert score["points"] >= 95
    assert score["tip"]["error_mm"] < 1.0 and score["tip"]["in_target"]
    assert score["angle"]["error_deg"] < 3.0
    assert score["safety"]["safe"] and not score["safety"]["violations_during"]
    assert all(item["closest_deg"] < 0.01 for item in score["views"]["items"])
    assert score["radiation"]["shots"] == len(case.plan.views) + 1
    assert score["radiation"]["uninformative_shots"] == 1  # "AP check" repeats the squared endplate unchanged
    assert score["efficiency"]["punctures"] == 1 and score["efficiency"]["redirections"] == 0
    assert ok(client.get(f"/api/sessions/{sid}/score")) == score
    reveal = finished["reveal"]
    assert np.allclose(reveal["target_mm"], case.plan.target_mm, atol=0.01)
    for key in ("reveal_png", "review_png"):
        picture = client.get(reveal[key])
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(picture.content)).size[0] >= 512


def test_a_needle_through_the_canal_fails_with_the_violation(client):
    sid = start(client)
    # midline, just below the L4 spinous process, straight in: through the interlaminar space into the canal
    ok(client.post(f"/api/sessions/{sid}/needle", json={"action": "place", "left_mm": 5, "cranial_mm": -15}))
    for _ in range(30):
        moved = ok(client.post(f"/api/sessions/{sid}/needle", json={"action": "advance", "mm": 5}))
        if moved["event"]:
            break
    assert moved["event"] == "bone"  # stopped by the back of the vertebral body, across the canal
    score = ok(client.post(f"/api/sessions/{sid}/finish", json={}))["score"]
    assert not score["passed"] and score["grade"] == "fail"
    assert any("vertebral canal" in v for v in score["safety"]["violations"])
    assert score["safety"]["points"] == 0
    assert any(line.startswith("UNSAFE") and "canal" in line for line in score["summary"])


def test_a_canal_puncture_on_the_way_fails_even_if_the_end_is_right(client, case):
    sid = start(client)
    ok(client.post(f"/api/sessions/{sid}/needle", json={"action": "place", "left_mm": 5, "cranial_mm": -15}))
    ok(client.post(f"/api/sessions/{sid}/needle", json={"action": "advance", "mm": 50}))
    ok(client.post(f"/api/sessions/{sid}/needle", json={"action": "advance", "mm": 50}))
    ok(client.post(f"/api/sessions/{sid}/needle", json={"action": "withdraw", "mm": 50}))
    score = follow_plan(client, sid, case.plan)["score"]
    assert score["tip"]["in_target"] and not score["safety"]["violations"]
    assert not score["passed"] and score["safety"]["violations_during"]
    assert score["efficiency"]["punctures"] == 2 and score["efficiency"]["back_and_forth"] == 1


def _log_text(client, sid: str) -> str:
    (path,) = client.log_dir.glob(f"*-{sid}.json")
    return path.read_text()


@pytest.mark.parametrize("method, path, body, status, words", [
    ("put", "carm", {"oblique_deg": 200}, 422, "oblique_deg must be within"),
    ("put", "carm", {"tilt_deg": "ten"}, 422, "tilt_deg must be a number"),
    ("put", "carm", {"tilt_deg": True}, 422, "tilt_deg must be a number"),
    ("put", "carm", {"collimator_mm": 10}, 422, "collimator_mm must be within"),
    ("put", "carm", {"preset": "axial"}, 422, "preset must be one of"),
    ("put", "carm", {"oblique": 10}, 400, "unknown key"),
    ("put", "carm", {}, 400, "give oblique_deg"),
    ("put", "carm", [1, 2], 400, "must be a JSON object"),
    ("put", "carm", b"{oblique_deg: 1", 400, "not valid JSON"),
    ("put", "carm", b'{"oblique_deg": NaN}', 422, "must be a number"),
    ("put", "carm", b'{"oblique_deg": 1e999}', 422, "must be a number"),
    ("put", "carm", b'{"pad": "' + b"x" * 20000 + b'"}', 413, "larger than"),
    ("post", "shots", {"size": 1024}, 400, "unknown key"),
    ("post", "needle", {"action": "advance", "mm": 5}, 409, "place it first"),
    ("post", "needle", {"action": "fly"}, 400, "action must be one of"),
    ("post", "needle", {"action": "place", "shot": 7, "col": 1, "row": 1}, 404, "no shot 7"),
    ("post", "needle", {"action": "place", "left_mm": 500}, 422, "left_mm must be within"),
    ("post", "needle", {"action": "place"}, 400, "place needs"),
    ("post", "needle", {"action": "place", "path": "/etc/passwd"}, 400, "place needs"),
])
def test_bad_requests_get_4xx_and_change_nothing(client, method, path, body, status, words):
    sid = start(client)
    before, log_before = ok(client.get(f"/api/sessions/{sid}")), _log_text(client, sid)
    kwargs = {"content": body} if isinstance(body, bytes) else {"json": body}
    answer = getattr(client, method)(f"/api/sessions/{sid}/{path}", **kwargs)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]
    after = ok(client.get(f"/api/sessions/{sid}"))
    assert {k: v for k, v in after.items() if k != "elapsed_s"} == {k: v for k, v in before.items()
                                                                    if k != "elapsed_s"}
    assert _log_text(client, sid) == log_before


def test_needle_requests_out_of_range_change_nothing_once_placed(client):
    sid = start(client)
    ok(client.post(f"/api/sessions/{sid}/needle", json={"action": "place", "left_mm": 70, "cranial_mm": 0}))
    ok(client.post(f"/api/sessions/{sid}/needle", json={"action": "advance", "mm": 20}))
    before = ok(client.get(f"/api/sessions/{sid}"))
    for body, status in (({"action": "advance", "mm": 0}, 422), ({"action": "withdraw", "mm": 51}, 422),
                         ({"action": "redirect", "oblique_deg": 25}, 422), ({"action": "redirect"}, 400),
                         ({"action": "aim", "along": "detector"}, 422), ({"action": "aim", "oblique_deg": 10}, 400),
                         ({"action": "aim", "oblique_deg": 0, "tilt_deg": 75}, 422),
                         ({"action": "aim", "oblique_deg": 180, "tilt_deg": 0}, 422)):
        answer = client.post(f"/api/sessions/{sid}/needle", json=body)
        assert answer.status_code == status, (body, answer.text)
    after = ok(client.get(f"/api/sessions/{sid}"))
    assert after["needle"] == before["needle"] and after["actions"] == before["actions"]


def test_unknown_and_finished_sessions_are_refused(client):
    assert client.get("/api/sessions/0123456789").status_code == 404
    assert client.get("/api/sessions/..%2F..%2Fetc").status_code == 404
    assert "error" in client.get("/api/nothing").json()
    assert client.post("/api/sessions", json={"trainee": "../../etc/passwd"}).status_code == 422
    assert client.post("/api/sessions", json={"case": "/tmp/other.nii"}).status_code == 400
    sid = start(client)
    assert client.get(f"/api/sessions/{sid}/score").status_code == 409
    assert client.get(f"/api/sessions/{sid}/reveal.png").status_code == 409
    ok(client.post(f"/api/sessions/{sid}/finish", json={}))
    for method, path, body in (("put", "carm", {"preset": "ap"}), ("post", "shots", {}), ("post", "finish", {})):
        answer = getattr(client, method)(f"/api/sessions/{sid}/{path}", json=body)
        assert answer.status_code == 409 and "finished" in answer.json()["error"]


def test_sessions_are_bounded(case, tmp_path):
    with TestClient(create_app(case, log_dir=tmp_path, max_sessions=2)) as client:
        first, _ = start(client), start(client)
        refused = client.post("/api/sessions", json={})
        assert refused.status_code == 429 and "finish one" in refused.json()["error"]
        ok(client.post(f"/api/sessions/{first}/finish", json={}))
        start(client)  # the finished one makes room
        assert client.get(f"/api/sessions/{first}").status_code == 404


def test_a_shot_is_the_pose_with_the_needle(client, case):
    sid = start(client)
    ok(client.post(f"/api/sessions/{sid}/needle", json={"action": "place", "left_mm": 70, "cranial_mm": 0}))
    ok(client.post(f"/api/sessions/{sid}/needle", json={"action": "advance", "mm": 30}))
    first = ok(client.post(f"/api/sessions/{sid}/shots", json={}))
    image = Image.open(io.BytesIO(base64.b64decode(first["shot"]["image_png"].split(",", 1)[1])))
    assert image.size == (IMAGE_SIZE, IMAGE_SIZE) and image.mode == "L"
    pixels = np.asarray(image)
    assert pixels[0, 0] == 0 and pixels[256, 256] > 0  # round field: the corners are black
    session = session_of(client, sid)
    tip = session.carm().project(session.needle.tip_mm[None])
    assert np.allclose(first["shot"]["needle_tip_px"], [tip.col[0], tip.row[0]], atol=0.01)
    col, row = (int(round(v)) for v in first["shot"]["needle_tip_px"])
    assert pixels[row, col - 3:col + 4].min() < np.median(pixels)  # the steel shows dark at its tip
    again = ok(client.post(f"/api/sessions/{sid}/shots", json={}))
    assert first["shot"]["informative"] and not again["shot"]["informative"]
    assert again["state"]["dose_proxy_cm2"] == pytest.approx(2 * first["shot"]["field_area_cm2"], abs=0.02)
    ok(client.put(f"/api/sessions/{sid}/carm", json={"collimator_mm": 150}))
    third = ok(client.post(f"/api/sessions/{sid}/shots", json={}))
    assert third["shot"]["field_area_cm2"] == pytest.approx(first["shot"]["field_area_cm2"] / 4, rel=1e-3)


def test_picking_a_pixel_puts_the_entry_on_that_pixel_and_the_skin(client, case):
    sid = start(client)
    ok(client.put(f"/api/sessions/{sid}/carm", json={"oblique_deg": 30, "tilt_deg": -8}))
    ok(client.post(f"/api/sessions/{sid}/shots", json={}))
    needle = ok(client.post(f"/api/sessions/{sid}/needle", json={"action": "place", "shot": 1, "col": 200.25,
                                                                 "row": 300.5}))["state"]["needle"]
    session = session_of(client, sid)
    assert np.allclose(session.needle.entry_mm, needle["entry_mm"], atol=1e-3)  # the answer rounds to um
    entry = session.needle.entry_mm
    seen = session.carm().project(entry[None])
    assert seen.col[0] == pytest.approx(200.25, abs=1e-6) and seen.row[0] == pytest.approx(300.5, abs=1e-6)
    scene = case.scene
    assert scene.lookup(scene.body, entry[None])[0]
    outside = entry - 1.0 * session.needle.direction  # 1 mm back along the needle: out of the body
    assert not scene.lookup(scene.body, outside[None])[0]
    dot = session.carm().project(entry[None] + 50.0 * session.needle.direction)
    assert dot.col[0] == pytest.approx(200.25, abs=1e-6)  # the needle runs down the ray: seen as a dot


def test_offsets_are_measured_from_the_midline_and_the_spinous_tip(client, case):
    sid = start(client)
    needle = ok(client.post(f"/api/sessions/{sid}/needle", json={"action": "place", "left_mm": -40,
                                                                 "cranial_mm": 12}))["state"]["needle"]
    from needleplan.plan.assemble import midline_plane

    point, left = midline_plane(case.spine)
    marks = case.spine["L4"].landmarks
    entry = np.asarray(needle["entry_mm"])
    assert (entry - point) @ left == pytest.approx(-40.0, abs=0.5)  # the plan's entry_offsets, measured the same
    superior = np.asarray(marks["axes"]["superior"])
    assert (entry - np.asarray(marks["spinous_tip"])) @ superior == pytest.approx(12.0, abs=0.5)
    assert np.allclose(needle["direction"], [0, -1, 0])


def test_panning_moves_the_isocentre(client, case):
    sid = start(client)
    ok(client.put(f"/api/sessions/{sid}/carm", json={"pan_left_mm": 20, "pan_cranial_mm": -15}))
    carm = session_of(client, sid).carm()
    moved = case.isocenter_mm + np.array([20.0, 0.0, -15.0])
    centre = carm.project(moved[None])
    assert centre.col[0] == pytest.approx(255.5) and centre.row[0] == pytest.approx(255.5)


def test_bone_stops_the_needle_and_aiming_pivots_at_the_skin(client, case):
    sid = start(client)
    ok(client.post(f"/api/sessions/{sid}/needle", json={"action": "place", "left_mm": 30, "cranial_mm": 0}))
    moved = ok(client.post(f"/api/sessions/{sid}/needle", json={"action": "advance", "mm": 50}))
    moved = ok(client.post(f"/api/sessions/{sid}/needle", json={"action": "advance", "mm": 50}))
    assert moved["event"] == "bone" and moved["state"]["needle"]["bone_contact"]
    needle = moved["state"]["needle"]
    scene = case.scene
    tip = np.asarray(needle["tip_mm"])
    direction = np.asarray(needle["direction"])
    assert not scene.lookup(scene.bone, tip[None])[0]
    assert scene.lookup(scene.bone, (tip + 0.5 * direction)[None])[0]  # bone within a sample ahead
    turned = ok(client.post(f"/api/sessions/{sid}/needle", json={"action": "redirect", "oblique_deg": 10}))
    assert np.allclose(turned["state"]["needle"]["entry_mm"], needle["entry_mm"])
    assert turned["state"]["needle"]["oblique_deg"] == pytest.approx(needle["oblique_deg"] + 10, abs=1e-6)


def test_mbb_on_the_plan_touches_bone_and_passes(tmp_path):
    case = prepare_case(None, "mbb", "L3", "right")
    with TestClient(create_app(case, log_dir=tmp_path)) as client:
        score = follow_plan(client, start(client), case.plan)["score"]
    assert score["passed"] and score["tip"]["bone_contact"] is True and score["points"] >= 95, score["summary"]


def test_rfa_on_the_phantom_is_refused_with_the_reason():
    # its box SAP holds the nerve steeper than a clear electrode can parallel: no practice on a plan that fails
    with pytest.raises(NeedleplanError, match="degrees of the nerve"):
        prepare_case(None, "rfa", "L3", "left")


@pytest.mark.realdata
def test_rfa_along_the_plan_stops_on_bone_and_scores_the_lesion_there(tmp_path):
    scan = SHARED_DATA / "totalseg_example_abdomen_ct" / "example_ct.nii.gz"
    if not scan.is_file():
        pytest.skip(f"shared real data not found at {scan.parent}")
    case = prepare_case(scan, "rfa", "L3", "left")
    with TestClient(create_app(case, log_dir=tmp_path)) as client:
        sid = start(client)
        score = follow_plan(client, sid, case.plan)["score"]
        needle = session_of(client, sid).needle
    from needleplan.plan.procedures.medial_branch import lesion_at

    plan, rfa = case.plan, score["rfa"]
    assert score["tip"]["bone_contact"] and score["angle"]["error_deg"] < 0.5
    # the planned tip may lie inside the bone label by its contact allowance; the simulated needle stops on bone
    allowance = case.plan.options.bone_contact_mm + float(np.linalg.norm(plan.needle.tip_mm - plan.target_mm))
    assert score["tip"]["error_mm"] <= allowance
    expected = lesion_at(plan.nerve, needle.tip_mm, needle.direction, plan.options)
    assert rfa["nerve_captured_mm"] == pytest.approx(expected.nerve_captured_mm, abs=1e-3)
    assert 0 < rfa["nerve_captured_mm"] <= rfa["plan_captured_mm"] + 0.5
    assert rfa["electrode_to_nerve_deg"] == pytest.approx(rfa["plan_electrode_to_nerve_deg"], abs=0.5)
    assert rfa["ok"] == (rfa["nerve_captured_mm"] >= 5.0 and rfa["electrode_to_nerve_deg"] <= 20.0)
    assert score["passed"] == rfa["ok"]


def test_the_log_replays_to_the_same_score_and_an_edited_one_is_refused(client, case, tmp_path):
    sid = start(client)
    follow_plan(client, sid, case.plan)
    (path,) = client.log_dir.glob(f"*-{sid}.json")
    document = read_log(path)
    assert document["session"]["trainee"] == "Dr. Test" and document["finished"]
    assert [a["kind"] for a in document["actions"]][:3] == ["start", "carm", "shot"]
    assert "/" not in json.dumps(document["case"])  # no file path in the log
    replayed = replay(case, document)
    assert replayed.score == document["score"]
    edited = json.loads(json.dumps(document))
    advance = next(a for a in edited["actions"] if a["input"].get("action") == "advance")
    advance["input"]["mm"] += 2.0
    with pytest.raises(NeedleplanError, match="another needle"):
        replay(case, edited)
    other = json.loads(json.dumps(document))
    other["case"]["digest"] = "0" * 64
    with pytest.raises(NeedleplanError, match="made on case"):
        replay(case, other)
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema": "something else"}')
    with pytest.raises(NeedleplanError, match="not a needleplan practice log"):
        read_log(broken)


def test_review_mode_serves_the_session_and_re_renders_its_shots_exactly(client, case, tmp_path):
    sid = start(client)
    shot = ok(client.post(f"/api/sessions/{sid}/shots", json={}))["shot"]
    ok(client.post(f"/api/sessions/{sid}/finish", json={}))
    (path,) = client.log_dir.glob(f"*-{sid}.json")
    document = read_log(path)
    session = replay(case, document)
    with TestClient(create_app(case, log_dir=tmp_path / "review", review=session, review_log=document)) as review:
        assert ok(review.get("/api/task"))["mode"] == "review"
        served = ok(review.get("/api/review"))
        assert served["score"] == document["score"] and served["log"]["session"]["id"] == sid
        png = review.get("/api/review/shots/1.png")
        assert png.status_code == 200
        assert png.content == base64.b64decode(shot["image_png"].split(",", 1)[1])
        assert review.get("/api/review/shots/2.png").status_code == 404
        assert review.post("/api/sessions", json={}).status_code == 409
    assert not (tmp_path / "review").exists() or not list(Path(tmp_path / "review").iterdir())
