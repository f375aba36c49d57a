"""Evaluation: per-query errors, summaries (true medians, recall at thresholds, runtime,
memory), threshold presets and reports (results.json, report.md, error_cdf.png, poses.txt).

Typical use by a driver::

    res = [query_result(q.name, est, q.cam_from_world, seconds) for ...]
    preset = default_preset(scene)
    ths = thresholds_for(preset, scene.scale())
    summ = summarize(res, ths)
    write_report(out_dir, res, summ, config=cfg,
                 meta={"scene": scene.name, "method": "hloc", "split": "official",
                       "preset": preset, "scene_scale": scene.scale()})
"""
from .metrics import (QueryResult, normalize_thresholds, query_result, recall, summarize,
                      true_median)
from .presets import (ALWAYS_METRIC, OUTDOOR_SCALE_M, PRESETS, Threshold, default_preset,
                      thresholds_for)
from .report import (markdown_table, plot_error_cdfs, read_pose_file, read_results,
                     render_markdown, result_from_json, result_to_json, summary_row, to_json,
                     versions, write_pose_file, write_report)

__all__ = [
    "ALWAYS_METRIC", "OUTDOOR_SCALE_M", "PRESETS", "QueryResult", "Threshold", "default_preset",
    "markdown_table", "normalize_thresholds", "plot_error_cdfs", "query_result",
    "read_pose_file", "read_results", "recall", "render_markdown", "result_from_json",
    "result_to_json", "summarize", "summary_row", "thresholds_for", "to_json", "true_median",
    "versions", "write_pose_file", "write_report",
]
