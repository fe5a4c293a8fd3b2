"""Figures render with the right axes and units, files are real images, the frontier matches the planner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from moeplan.planner import Priors, PlanRequest, plan
from moeplan.planner.curves import band_points, budgets, frontier, iso_flop, pareto
from moeplan.plots import band_figure, frontier_figure, iso_flop_figure, pareto_figure, save

SMALL = Priors(max_d_hidden=2048, max_layers=48, max_experts=64, max_top_k=8, max_shared=2)
REQUEST = PlanRequest(flops=1e21, priors=SMALL, storage=":memory:")
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def front():
    return frontier(REQUEST, budgets(1e18, 1e22, 1))


def test_frontier_points_are_the_planners_optima(front):
    assert [p.compute for p in front.points] == pytest.approx([1e18, 1e19, 1e20, 1e21, 1e22])
    p = front.points[3]
    planned = plan(REQUEST)
    assert p.loss == pytest.approx(planned.law.loss, abs=1e-12)
    assert (p.n_layers, p.d_hidden, p.n_experts, p.top_k) == (planned.architecture.n_layers,
                                                              planned.architecture.d_hidden,
                                                              planned.architecture.n_experts, planned.architecture.top_k)
    assert not front.points[0].feasible and "tokens per parameter" in front.points[0].reason
    losses = [q.loss for q in front.points if q.feasible]
    assert losses == sorted(losses, reverse=True)  # more compute, lower predicted loss


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_each_figure_renders_with_labels_and_units(front, tmp_path, suffix):
    figures = {
        "frontier": (frontier_figure(front), "training compute C (FLOPs)", "predicted loss (nats/token)"),
        "isoflop": (iso_flop_figure(iso_flop(REQUEST, [1e20, 1e21])), "activated parameters N_a (non-embedding)",
                    "predicted loss (nats/token)"),
        "band": (band_figure(band_points(REQUEST.model_copy(update={"tolerance": 0.005}))),
                 "activation ratio N_a/N (non-embedding, %)", "activated experts G = top_k + shared"),
        "pareto": (pareto_figure(pareto(REQUEST, caps=5)),
                   "weight memory (GB at 2 bytes per parameter, all parameters)", "predicted loss (nats/token)"),
    }
    for name, (fig, xlabel, ylabel) in figures.items():
        ax = fig.axes[0]
        assert (ax.get_xlabel(), ax.get_ylabel()) == (xlabel, ylabel), name
        assert ax.get_xscale() == "log"
        assert ax.lines or ax.collections, name
        path = save(fig, tmp_path / f"{name}.{suffix}")
        head = path.read_bytes()[:8]
        assert head.startswith(b"\x89PNG") if suffix == "png" else b"<?xml" in head or b"<svg" in path.read_bytes()[:200]
        assert path.stat().st_size > 10_000, name


def test_frontier_shades_the_fitted_compute_and_marks_extrapolation(front):
    ax = frontier_figure(front).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "extrapolated" in labels and "fitted compute range (6·N_a·D)" in labels
    assert front.fitted_compute == pytest.approx((6 * 30e6 * 10e9, 6 * 2.2e9 * 50e9))


def test_frontier_cli_json_csv_and_plot(cli, tmp_path):
    plot, table = tmp_path / "f.svg", tmp_path / "f.csv"
    out = cli("frontier", "--from", "1e19", "--to", "1e21", "--per-decade", "1", "--plot", plot, "--csv", table,
              "--json")
    assert out.code == 0, out.err
    data = out.json()
    assert len(data["points"]) == 3 and data["law"] == "hy"
    assert data == json.loads(frontier(PlanRequest(flops=1e19), budgets(1e19, 1e21, 1)).model_dump_json())
    assert plot.stat().st_size > 10_000 and table.read_text().count("\n") == 4


def test_plan_plot_writes_three_figures(cli, tmp_path):
    out = cli("plan", "--flops", "1e20", "--max-d-hidden", "1024", "--max-experts", "32", "--storage", ":memory:",
              "--plot", tmp_path / "p.png", "--json")
    assert out.code == 0, out.err
    for name in ("isoflop", "band", "pareto"):
        assert (tmp_path / f"p-{name}.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [(("--from", "1e20", "--to", "1e19"), 1, "must be positive and at most --to"),
     (("--from", "-5"), 2, "flops: Input should be greater than 0"),
     (("--plot", "x.jpg", "--from", "1e20", "--to", "1e20"), 2, "plots are written as .png or .svg")],
)
def test_bad_frontier_input(cli, tmp_path, args, code, message):
    out = cli("frontier", *args)
    assert out.code == code and message in out.err and len(out.err.strip().splitlines()) == 1
    assert not (tmp_path / "x.jpg").exists()


@pytest.mark.slow
def test_gallery_script_regenerates_every_image(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "docs" / "make_gallery.py"), str(tmp_path)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    made = sorted(p.name for p in tmp_path.iterdir())
    committed = sorted(p.name for p in (ROOT / "docs" / "gallery").iterdir())
    assert made == committed == ["band.png", "frontier.png", "isoflop.png", "pareto.png"]


def test_band_marks_the_plan_in_percent_and_pareto_is_in_gigabytes(tmp_path):
    planned = plan(REQUEST)
    band = band_points(REQUEST)
    ax = band_figure(band, planned).axes[0]
    assert any(t.get_text().startswith("the plan") for t in ax.get_legend().get_texts())
    star = ax.collections[-1].get_offsets()[0]
    ratio = planned.counts.active.without_embeddings / planned.counts.total.without_embeddings
    assert tuple(star) == pytest.approx((100 * ratio, planned.counts.activated_experts))
    assert ax.xaxis.get_major_formatter()(3.0, 0).endswith("%")
    front = pareto(REQUEST, caps=5)
    line = pareto_figure(front, bytes_per_param=2.0).axes[0].lines[0]
    assert list(line.get_xdata()) == pytest.approx([2 * t / 1e9 for t in front["total_params"]])


def test_iso_flop_axis_labels_between_the_decades(tmp_path):
    fig = iso_flop_figure(iso_flop(REQUEST, [1e20, 1e21]))
    save(fig, tmp_path / "i.png")  # draws: tick labels exist only after a draw
    minor = [t.get_text() for t in fig.axes[0].xaxis.get_minorticklabels() if t.get_text()]
    assert minor, "only the decades are labelled"


def test_frontier_shows_n_n_a_and_d_against_compute(front):
    sizes = frontier_figure(front).axes[1]
    labels = [t.get_text() for t in sizes.get_legend().get_texts()]
    assert labels[-3:] == ["total parameters N (non-embedding)", "activated parameters N_a (non-embedding)",
                           "training tokens D"]
    feasible = [p for p in front.points if p.feasible]
    n_line, n_a_line, d_line = sizes.lines[-3:]
    assert list(n_line.get_ydata()) == [p.law_N for p in feasible]
    assert list(d_line.get_ydata()) == [p.tokens for p in feasible]
    assert sizes.get_yscale() == "log" and sizes.get_xscale() == "log"


def test_dpi_sets_png_resolution(cli, tmp_path):
    import struct

    sizes = []
    for dpi in (50, 100):
        path = tmp_path / f"f{dpi}.png"
        assert cli("frontier", "--from", "1e20", "--to", "1e21", "--plot", path, "--dpi", dpi).code == 0
        sizes.append(struct.unpack(">II", path.read_bytes()[16:24]))  # PNG IHDR width, height
    assert sizes[1][0] == pytest.approx(2 * sizes[0][0], abs=2)
