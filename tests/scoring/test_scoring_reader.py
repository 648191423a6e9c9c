"""Reading log folders: accepted layouts, tolerated damage, and one clear error per bad input."""
import json
import os

import pytest

import scoring
from scoring import layout
from scoring.errors import ScoringInputError, TargetsUnavailableError
from scoring_logs import MINI_TARGETS, csv_text, run_score_cli, write_targets, write_trial


@pytest.fixture
def targets(tmp_path):
    return write_targets(str(tmp_path / "targets.json"))


def good_trial(root, submission="sub", study="study_0", workload="alpha", trial=1, **kwargs):
    return write_trial(str(root), submission, study, workload, trial, [(10, .5), (20, .9)],
                       "accuracy", **kwargs)


# ----------------------------------------------------------------------------- layouts

@pytest.mark.parametrize("parts, expected", [
    ((), ("root_name", "study_0")),
    (("study_3",), ("root_name", "study_3")),
    (("study_2-2023-10-11-16-58-40",), ("root_name", "study_2")),
    (("adamw",), ("adamw", "study_0")),
    (("adamw_2024-01-02_03-04-05",), ("adamw", "study_0")),
    (("adamw", "study_1"), ("adamw", "study_1")),
    (("external_tuning", "adamw", "study_4"), ("external_tuning/adamw", "study_4")),
])
def test_submission_and_study_labels(parts, expected):
    assert layout.submission_and_study("/logs/root_name", parts) == expected


def test_one_experiment_of_our_harness_can_be_scored_directly(tmp_path, targets):
    # <experiment_dir>/<experiment_name>/<workload>_<framework>/trial_<k>/
    write_trial(str(tmp_path), "my_experiment", "", "alpha", 1, [(10, .9)], "accuracy")
    runs = scoring.load_runs(tmp_path, targets)
    assert runs.trials[["submission", "study"]].values.tolist() == [["my_experiment",
                                                                     "study_0"]]


def test_jax_and_pytorch_folders_are_both_read(tmp_path, targets):
    good_trial(tmp_path, workload="alpha", framework="jax")
    good_trial(tmp_path, workload="beta", framework="pytorch",
               text=csv_text("loss", [(5, 0.4)]))
    runs = scoring.load_runs(tmp_path, targets)
    assert sorted(runs.trials["framework"]) == ["jax", "pytorch"]


def test_temporary_files_and_extra_files_are_ignored(tmp_path, targets):
    path = good_trial(tmp_path)
    for name in [".tmp_abc_eval_measurements.csv", "measurements.csv", "meta_data_0.json"]:
        (tmp_path / path / name).write_text("garbage,\n1")
    runs = scoring.load_runs(tmp_path, targets)
    assert runs.trials["n_evals"].tolist() == [2]


def test_empty_csv_is_a_trial_without_evals_not_an_error(tmp_path, targets):
    good_trial(tmp_path, trial=1)
    good_trial(tmp_path, trial=2, text="")
    good_trial(tmp_path, trial=3, text=csv_text("accuracy", []))  # header only
    runs = scoring.load_runs(tmp_path, targets)
    assert runs.trials["status"].tolist() == ["ok", "no_evals", "no_evals"]
    assert (runs.notes["kind"] == "no_evals").sum() == 2


def test_windows_line_endings_and_blank_lines_are_fine(tmp_path, targets):
    text = csv_text("accuracy", [(10, .5), (20, .9)]).replace("\n", "\r\n") + "\r\n"
    good_trial(tmp_path, text=text)
    runs = scoring.load_runs(tmp_path, targets)
    assert runs.evals["time"].tolist() == [10.0, 20.0]


def test_infinite_and_nan_spellings_parse(tmp_path, targets):
    text = csv_text("accuracy", [(10, .5), (20, .9), (30, .1)])
    text = text.replace(",0.5,", ",nan,").replace(",0.1,", ",inf,")
    good_trial(tmp_path, text=text)
    runs = scoring.load_runs(tmp_path, targets)
    values = runs.evals["value"].tolist()
    # NaN stays NaN; an infinite accuracy is a broken eval: NaN too, and noted.
    assert values[1] == 0.9 and values[0] != values[0] and values[2] != values[2]
    (note,) = runs.notes[runs.notes["kind"] == "infinite_value"]["message"]
    assert "validation/accuracy is inf in row 3" in note


def test_infinite_accuracy_never_reaches_the_target(tmp_path, targets):
    text = csv_text("accuracy", [(10, .5), (20, .6), (30, .95)]).replace(",0.6,", ",inf,")
    good_trial(tmp_path, text=text)
    good_trial(tmp_path, workload="beta", text=csv_text("loss", [(5, 0.4)]))
    result = scoring.score(tmp_path, targets, held_out=False, num_studies=1, num_trials=1)
    assert result.times.loc["sub", "alpha"] == 30.0  # the real hit, not the inf at 20


def test_a_last_row_without_its_newline_is_half_written(tmp_path, targets):
    # A run killed while appending its last eval, inside the last field: a loss of 0.589 cut
    # to "0.5" would reach the target loss <= 0.5.
    text = "score,global_step,validation/loss\n10,10,0.9\n20,20,0.7\n30,30,0.5"
    good_trial(tmp_path, workload="beta", text=text)
    good_trial(tmp_path, workload="alpha")
    runs = scoring.load_runs(tmp_path, targets)
    beta = runs.trials.set_index("workload").loc["beta"]
    assert beta["status"] == "truncated" and beta["n_evals"] == 2
    assert (runs.notes["kind"] == "truncated").sum() == 1
    result = scoring.score(runs, held_out=False, num_studies=1, num_trials=1)
    assert result.times.loc["sub", "beta"] == float("inf")


def test_negative_and_backwards_times_and_repeated_steps_get_notes(tmp_path, targets):
    lines = csv_text("accuracy", [(10, .5), (20, .6), (15, .7), (-1, .8)]).splitlines()
    lines[2] = lines[2].replace(",20,0,20,", ",10,0,20,")  # global_step 20 -> 10: logged twice
    good_trial(tmp_path, text="\n".join(lines) + "\n")
    notes = scoring.load_runs(tmp_path, targets).notes.set_index("kind")["message"]
    assert "time goes backwards in row 3 (20.0 -> 15.0)" in notes["time_backwards"]
    assert "(and 1 more rows)" in notes["time_backwards"]
    assert "negative time -1.0 in row 4" in notes["negative_time"]
    assert "global_step 10 logged again in row 2" in notes["duplicate_step"]


def test_a_clean_trial_gets_no_notes(tmp_path, targets):
    good_trial(tmp_path)
    assert scoring.load_runs(tmp_path, targets).notes.empty


def with_budget(targets_path, workload, seconds):
    table = json.loads(open(targets_path).read())
    table["workloads"][workload]["max_allowed_runtime_sec"] = seconds
    with open(targets_path, "w") as f:
        json.dump(table, f)
    return targets_path


def test_evals_past_the_budget_do_not_count(tmp_path, targets):
    # The target is hit at 30 s; the workload's budget is 25 s.
    write_trial(str(tmp_path), "sub", "study_0", "alpha", 1, [(10, .5), (30, .9)])
    write_trial(str(tmp_path), "sub", "study_0", "beta", 1, [(5, .4)], "loss")
    with_budget(targets, "alpha", 25)
    kwargs = dict(held_out=False, num_studies=1, num_trials=1)
    external = scoring.score(tmp_path, targets, **kwargs)
    assert external.times.loc["sub", "alpha"] == float("inf")
    (note,) = external.notes[external.notes["kind"] == "over_budget"]["message"]
    assert "1 evals after the budget of 25 s (first at 30 s) do not count" == note
    # Self-tuning gets 1.5x the budget: 37.5 s, so the hit at 30 s counts.
    self_tuned = scoring.score(tmp_path, targets, self_tuning_ruleset=True, **kwargs)
    assert self_tuned.times.loc["sub", "alpha"] == 30.0
    assert not (self_tuned.notes["kind"] == "over_budget").any()


def test_without_a_budget_in_the_targets_the_logged_one_counts(tmp_path, targets):
    path = write_trial(str(tmp_path), "sub", "study_0", "alpha", 1, [(10, .5), (30, .9)])
    write_trial(str(tmp_path), "sub", "study_0", "beta", 1, [(5, .4)], "loss")
    with open(os.path.join(path, "meta_data_0.json"), "w") as f:
        json.dump({"limits": {"budget_sec": 20.0, "max_allowed_runtime_sec": 20.0}}, f)
    result = scoring.score(tmp_path, targets, held_out=False, num_studies=1, num_trials=1)
    assert result.times.loc["sub", "alpha"] == float("inf")
    assert result.times.loc["sub", "beta"] == 5.0  # no budget known: nothing voided


def test_a_trial_whose_submission_read_held_out_data_is_noted(tmp_path, targets):
    path = good_trial(tmp_path)
    with open(os.path.join(path, "meta_data_1.json"), "w") as f:
        json.dump({"eval_data_accessed_by_submission": True}, f)
    with open(os.path.join(path, "meta_data_0.json"), "w") as f:
        json.dump({"rng_seed": 0}, f)
    runs = scoring.load_runs(tmp_path, targets)
    assert runs.trials["eval_data_access"].tolist() == [True]
    assert (runs.notes["kind"] == "eval_data_access").sum() == 1


# ----------------------------------------------------------------------------- bad input

def error_for(root, targets, **kwargs) -> ScoringInputError:
    with pytest.raises(ScoringInputError) as info:
        scoring.load_runs(root, targets, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith(info.value.path + ": ")
    return info.value


def test_row_with_wrong_field_count_names_the_file(tmp_path, targets):
    lines = csv_text("accuracy", [(10, .5), (20, .9), (30, .95)]).splitlines()
    lines[2] = lines[2] + ",17"  # a middle row with one field too many
    path = good_trial(tmp_path, text="\n".join(lines) + "\n")
    error = error_for(tmp_path, targets)
    assert error.path == os.path.join(path, "eval_measurements.csv")
    assert "row 2 has 10 fields, the header has 9" in error.problem


def test_non_numeric_value_names_file_column_and_row(tmp_path, targets):
    good_trial(tmp_path, trial=1)
    text = csv_text("accuracy", [(10, .5), (20, .9)]).replace(",0.9,", ",high,")
    path = good_trial(tmp_path, trial=2, text=text)
    error = error_for(tmp_path, targets)
    assert error.path == os.path.join(path, "eval_measurements.csv")
    assert "'validation/accuracy' row 2: 'high' is not a number" in error.problem


def test_missing_metric_column_names_the_file(tmp_path, targets):
    path = good_trial(tmp_path, text=csv_text("loss", [(10, .5)]))  # alpha needs accuracy
    error = error_for(tmp_path, targets)
    assert error.path == os.path.join(path, "eval_measurements.csv")
    assert "missing column 'validation/accuracy'" in error.problem


def test_missing_time_column_names_the_file(tmp_path, targets):
    text = csv_text("accuracy", [(10, .5)]).replace("score", "wallclock")
    good_trial(tmp_path, text=text)
    assert "missing column 'score'" in error_for(tmp_path, targets).problem
    runs = scoring.load_runs(tmp_path, targets, time_column="accumulated_submission_time")
    assert runs.evals["time"].tolist() == [10.0]


def test_empty_time_value_names_the_file(tmp_path, targets):
    lines = csv_text("accuracy", [(10, .5), (20, .9)]).splitlines()
    fields = lines[2].split(",")
    fields[5] = ""
    lines[2] = ",".join(fields)
    good_trial(tmp_path, text="\n".join(lines) + "\n")
    assert "empty time value in row 2" in error_for(tmp_path, targets).problem


def test_binary_file_names_the_file(tmp_path, targets):
    path = good_trial(tmp_path)
    with open(os.path.join(path, "eval_measurements.csv"), "wb") as f:
        f.write(b"\xff\xfe\x00garbage")
    assert "not a text CSV" in error_for(tmp_path, targets).problem


def test_unknown_workload_names_the_folder(tmp_path, targets):
    path = good_trial(tmp_path, workload="gamma")
    error = error_for(tmp_path, targets)
    assert error.path == os.path.dirname(path)
    assert "unknown workload 'gamma'" in error.problem and "--targets_file" in error.problem


def test_unknown_workloads_can_be_skipped(tmp_path, targets):
    good_trial(tmp_path, workload="gamma")
    good_trial(tmp_path, workload="alpha")
    runs = scoring.load_runs(tmp_path, targets, ignore_unknown_workloads=True)
    assert runs.trials["workload"].tolist() == ["alpha"]
    assert runs.notes["kind"].tolist() == ["unknown_workload"]


def test_empty_folder_names_the_folder(tmp_path, targets):
    (tmp_path / "sub" / "study_0").mkdir(parents=True)
    error = error_for(tmp_path, targets)
    assert error.path == str(tmp_path) and "no runs found" in error.problem


def test_missing_folder_names_the_folder(tmp_path, targets):
    error = error_for(tmp_path / "nope", targets)
    assert "no such folder" in error.problem


def test_the_same_trial_twice_is_an_error(tmp_path, targets):
    good_trial(tmp_path, study="study_0")
    good_trial(tmp_path, study="study_0-2023-10-11-16-58-40")  # the same label, study_0
    assert "same trial as" in error_for(tmp_path, targets).problem


def test_a_submission_in_both_frameworks_is_scored_side_by_side(tmp_path, targets):
    for framework, hit in (("jax", 20), ("pytorch", 40)):
        write_trial(str(tmp_path), "sub", "study_0", "alpha", 1, [(10, .5), (hit, .9)],
                    framework=framework)
        write_trial(str(tmp_path), "sub", "study_0", "beta", 1, [(5, .4)], "loss",
                    framework=framework)
    write_trial(str(tmp_path), "other", "study_0", "alpha", 1, [(30, .9)])  # one framework
    write_trial(str(tmp_path), "other", "study_0", "beta", 1, [(5, .4)], "loss")
    result = scoring.score(tmp_path, targets, held_out=False, num_studies=1, num_trials=1)
    assert sorted(result.scores.index) == ["other", "sub (jax)", "sub (pytorch)"]
    assert result.times.loc["sub (jax)", "alpha"] == 20.0
    assert result.times.loc["sub (pytorch)", "alpha"] == 40.0


def test_cli_prints_one_line_and_fails(tmp_path, targets):
    lines = csv_text("accuracy", [(10, .5), (20, .9)]).splitlines()
    lines[1] = lines[1] + ",1,2"
    path = good_trial(tmp_path / "logs", text="\n".join(lines) + "\n")
    proc = run_score_cli(f"--submission_directory={tmp_path / 'logs'}",
                         f"--targets_file={targets}", f"--output_dir={tmp_path / 'out'}")
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"algoperf score: error: {os.path.join(path, 'eval_measurements.csv')}: row 1 has 11 "
        "fields, the header has 9"]
    assert not (tmp_path / "out").exists()


def test_cli_without_a_directory_is_a_usage_error():
    proc = run_score_cli()
    assert proc.returncode == 2 and "--submission_directory is required" in proc.stderr


# ----------------------------------------------------------------------------- targets

def test_metric_direction_from_the_name():
    lower = ["loss", "ctc_loss", "wer", "error_rate", "l1_loss", "ppl"]
    higher = ["accuracy", "mean_average_precision", "ssim", "bleu"]
    assert all(scoring.lower_is_better(m) for m in lower)
    assert not any(scoring.lower_is_better(m) for m in higher)


def test_direction_can_be_given_explicitly():
    table = scoring.load_targets({"workloads": {"w": {
        "target_metric_name": "score", "validation_target_value": 1, "lower_is_better": True}}})
    assert table["w"].lower_is_better


def test_bad_targets_files_name_the_file(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    with pytest.raises(ScoringInputError, match="bad.json: not valid JSON"):
        scoring.load_targets(str(bad_json))
    no_value = tmp_path / "no_value.json"
    no_value.write_text(json.dumps({"workloads": {"w": {"target_metric_name": "accuracy"}}}))
    with pytest.raises(ScoringInputError, match="no_value.json: workload 'w' needs"):
        scoring.load_targets(str(no_value))
    with pytest.raises(ScoringInputError, match="missing.json: cannot read"):
        scoring.load_targets(str(tmp_path / "missing.json"))


def test_targets_come_from_the_registry_when_no_file_is_given(monkeypatch):
    import sys
    import types
    fake = types.ModuleType("workloads.registry")
    fake.targets_table = lambda: MINI_TARGETS
    monkeypatch.setitem(sys.modules, "workloads.registry", fake)
    table = scoring.load_targets(None)
    assert table.source == "workloads.registry" and table["beta"].lower_is_better


def test_without_registry_the_error_says_to_pass_a_targets_file(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "workloads.registry", None)  # import fails
    with pytest.raises(TargetsUnavailableError, match="--targets_file"):
        scoring.load_targets(None)
