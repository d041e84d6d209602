"""External figures: the shipped examples load, values are converted to the store's units, and a
bad file is refused with its file, line and the fix."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from energyray.report import external
from energyray.report.external import ExternalFormatError
from energyray.schema import names

ROOT = Path(__file__).resolve().parents[2]
HEADER = "model,hardware,precision,batch_size,metric,value,unit,source,date"


def _csv(tmp_path: Path, *rows: str, header: str = HEADER, name: str = "f.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_shipped_examples_load_and_are_marked_external():
    figures = external.load(ROOT / "conf" / "external")
    assert set(figures["kind"]) == {"external"}
    assert set(figures["file"].map(lambda f: Path(f).name)) == {"practicum_key_results.csv", "mlenergy_leaderboard.csv"}
    assert figures["source"].str.len().min() > 0 and figures["date"].str.len().min() >= 4
    # the practicum's table: 0.037 kWh for Mistral 7B int8, in J; its blank API energy left out (never 0)
    mistral = figures[(figures["model"] == "mistral-7b") & (figures["precision"] == "int8")]
    assert mistral.set_index("metric")["value"]["energy_j"] == pytest.approx(0.037 * 3.6e6)
    assert mistral.set_index("metric")["value"]["co2_g"] == pytest.approx(18.0)
    api = figures[figures["backend"] == "openai"]
    assert set(api["metric"]) == {"latency_request_s_mean"} and (figures["value"] > 0).all()
    # every ML.ENERGY figure cites its page
    ml = figures[figures["source"].str.contains("ML.ENERGY")]
    assert len(ml) >= 5 and ml["url"].str.startswith("https://ml.energy/").all()


def test_metrics_are_store_columns():
    declared = set(names("trials"))
    # j_per_image arrives with diffusion trials; every other metric is a declared column already
    assert set(external.METRICS) - declared <= {"j_per_image"}


def test_units_convert_and_wide_puts_metrics_side_by_side(tmp_path):
    path = _csv(tmp_path,
                "m,h100,bf16,8,j_per_request,2,Wh/response,S,2025-05-09",
                "m,h100,bf16,8,ttft_s,250,ms,S,2025-05-09",
                "m,h100,bf16,8,accuracy,61.5,%,S,2025-05-09",
                "m,h100,,,tokens_per_s,1200,tokens/s,S,2025")
    figures = external.load(path)
    assert list(figures["value"]) == pytest.approx([7200.0, 0.25, 0.615, 1200.0])
    assert list(figures["unit"]) == ["J/request", "s", "fraction", "tokens/s"]
    assert figures["batch_size"].dtype == "Int64" and pd.isna(figures["batch_size"].iloc[3])
    table = external.wide(figures)
    assert len(table) == 2 and set(table["kind"]) == {"external"}
    row = table[table["batch_size"] == 8].iloc[0]
    assert row["j_per_request"] == 7200.0 and row["ttft_s"] == 0.25 and pd.isna(row["tokens_per_s"])


def test_comments_and_quoted_commas(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text(f"# cite the source here\n{HEADER},notes\n# another comment\n"
                    'm,l4,int8,1,j_per_token,0.5,J/token,"Doe, 2024",2024-01-02,"GPU only, decode"\n')
    figures = external.load(path)
    assert figures.iloc[0]["source"] == "Doe, 2024" and figures.iloc[0]["notes"] == "GPU only, decode"
    assert figures.iloc[0]["line"] == 4


def test_parquet_reads_like_csv(tmp_path):
    frame = pd.DataFrame([{"model": "m", "hardware": "h100", "precision": None, "batch_size": 4,
                           "metric": "j_per_token", "value": 0.3, "unit": "J/token", "source": "S",
                           "date": "2025-01-01", "url": "https://example.org/x"}])
    frame.to_parquet(tmp_path / "f.parquet")
    figures = external.load(tmp_path / "f.parquet")
    assert figures.iloc[0]["value"] == 0.3 and figures.iloc[0]["batch_size"] == 4
    assert figures.iloc[0]["precision"] is None


@pytest.mark.parametrize(("rows", "header", "says"), [
    (["m,h100,bf16,8,j_per_tokn,0.2,J/token,S,2025"], HEADER, ["f.csv:2", "unknown metric 'j_per_tokn'",
                                                               "did you mean 'j_per_token'"]),
    (["m,h100,bf16,8,j_per_token,0.2,J/token,S"], HEADER.replace(",date", ""), ["f.csv", "missing column date",
                                                                                  "conf/external/README.md"]),
    (["m,h100,bf16,8,j_per_token,abc,J/token,S,2025"], HEADER, ["f.csv:2", "value 'abc' is not a number"]),
    (["m,h100,bf16,8,j_per_token,-1,J/token,S,2025"], HEADER, ["f.csv:2", "non-negative"]),
    (["m,h100,bf16,8,j_per_token,0.2,W,S,2025"], HEADER, ["f.csv:2", "unit 'W' does not fit j_per_token",
                                                         "J/token"]),
    (["m,h100,bf16,0,j_per_token,0.2,J/token,S,2025"], HEADER, ["f.csv:2", "batch_size '0'"]),
    (["m,h100,bf16,8,j_per_token,0.2,J/token,S,May 2025"], HEADER, ["f.csv:2", "YYYY-MM-DD"]),
    (["m,,bf16,8,j_per_token,0.2,J/token,S,2025"], HEADER, ["f.csv:2", "empty hardware"]),
    (["m,h100,bf16,8,j_per_token,0.2,J/token,S,2025,x"], HEADER + ",gpu", ["f.csv", "unknown column gpu",
                                                                            "notes"]),
    (["m,h100,bf16,8,j_per_token,0.2"], HEADER, ["f.csv:2", "6 cells for 9 columns"]),
])
def test_bad_rows_name_file_line_and_fix(tmp_path, rows, header, says):
    path = _csv(tmp_path, *rows, header=header)
    with pytest.raises(ExternalFormatError) as err:
        external.load(path)
    message = str(err.value)
    assert "\n" not in message
    for part in says:
        assert part in message


def test_missing_file_and_wrong_kind(tmp_path):
    with pytest.raises(ExternalFormatError, match="no such file"):
        external.load(tmp_path / "nope.csv")
    (tmp_path / "figures.xlsx").write_text("x")
    with pytest.raises(ExternalFormatError, match=r"\.csv or \.parquet"):
        external.load(tmp_path / "figures.xlsx")


def test_empty_directory_gives_an_empty_frame(tmp_path):
    figures = external.load(tmp_path)
    assert figures.empty and list(figures.columns) == external.COLUMNS
    assert external.wide(figures).empty
