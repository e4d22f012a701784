"""What a run's results look like to a person: ``charts`` (inline SVG), ``pages`` (the HTML
report and comparison), ``terminal`` (the tables printed by ``report`` and at the end of a run).
"""

from runner.report.pages import REPORT_FILE, build_compare_page, build_report, write_report

__all__ = ["REPORT_FILE", "build_compare_page", "build_report", "write_report"]
