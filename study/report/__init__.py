"""Interactive, offline Plotly reports of a study directory (see ``python -m study.report -h``)."""

from __future__ import annotations

from study.report.load import ReportInputError, StudyData, load_study
from study.report.page import build_compare_report, build_report

__all__ = ["ReportInputError", "StudyData", "build_compare_report", "build_report", "load_study"]
