"""session.py holds Session; measure.py keeps the records and re-exports Session and MeasureConfig."""
import subprocess
import sys

import culturealign.measure as measure
import culturealign.session as session
from culturealign.config import MeasureConfig


def test_session_lives_in_session_py_and_is_re_exported():
    assert session.Session.__module__ == "culturealign.session"
    assert measure.Session is session.Session and measure.library_versions is session.library_versions
    assert measure.MeasureConfig is MeasureConfig
    assert not hasattr(session, "measurement_record") and not hasattr(session, "kendall_tau")
    assert {"measurement_record", "diagnostics", "kendall_tau"} <= set(vars(measure))


def test_either_module_can_be_imported_first():
    for first in ("culturealign.session", "culturealign.measure"):
        code = (f"import {first}; from culturealign.measure import Session, MeasureConfig; "
                "from culturealign.session import Session as S; assert Session is S")
        subprocess.run([sys.executable, "-c", code], check=True)
