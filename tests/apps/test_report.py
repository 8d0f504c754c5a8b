from deeplab.apps.report import Report


def test_report_writes_table_and_figures(tmp_path):
    report = Report("title <x>", "lead")
    report.heading("Scores", "note")
    report.table(["name", "value"], [["a&b", 0.123456], ["c", 7]])
    report.figures([("pics/a.png", "caption a")])
    page = report.write(tmp_path).read_text()
    assert "title &lt;x&gt;" in page and "a&amp;b" in page
    assert "<td>0.1235</td>" in page and "<td>7</td>" in page
    assert 'src="pics/a.png"' in page and "caption a" in page
