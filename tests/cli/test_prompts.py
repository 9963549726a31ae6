"""The prompt dialogue (docs/model.md#prompts-and-options): validators, piped input, terminal
re-asking, per-model prompts."""
import io

import pytest

from lsm_core.cli.prompts import (
    Answers,
    ask_all,
    check_batch_size,
    check_batches_per_block,
    divisors,
    parse_gpu,
    parse_int,
    parse_scalar,
    prompt_names,
    prompt_texts,
)
from lsm_core.config import MODELS
from lsm_core.errors import UserError

PAPER_SPLITS = {"train": 50000, "valid": 10000, "test": 10000}
SMALL_SPLITS = {"train": 1000, "valid": 500, "test": 500}
BASE = ["GPU", "VERSION", "NET_NUM_VAR", "BATCH_SIZE", "BATCHS_PER_BLOCK"]
EXAMPLE = {"ASTRO_W_SCALING": "0.015", "STDP_NEURON_RATE_THESHOLD": "20",
           "STDP_NEURON_RATE_RANGE": "5", "INTIAL_ABS_W_SCLR": "1.0"}


class FakeTTY(io.StringIO):
    """A terminal: answers are re-asked instead of stopping the script."""

    def isatty(self):
        return True


def lines(*answers):
    return io.StringIO("".join(a + "\n" for a in answers))


# ---- validators ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("", "cpu"), ("cpu", "cpu"), ("CPU", "cpu"), (" -1 ", "cpu"), ("0", "0"), ("1", "1"),
    ("0,1", "0,1"), (" 0 , 1 ", "0,1"), ("01", "1"), ("3,2", "3,2")])
def test_parse_gpu_accepts(text, expected):
    assert parse_gpu(text) == expected


@pytest.mark.parametrize("text", ["gpu", "-2", "0,", "0,,1", "1.5", "0;1", "0,0", "a,b"])
def test_parse_gpu_rejects_with_message(text):
    with pytest.raises(UserError) as info:
        parse_gpu(text)
    message = str(info.value)
    assert message.startswith("GPU:") and repr(text.strip()) in message


def test_parse_int():
    assert parse_int("VERSION", " 12 ", 0) == 12
    assert parse_int("VERSION", "0", 0) == 0
    for bad in ["abc", "1.0", "", "1e3", "12a"]:
        with pytest.raises(UserError, match="VERSION: .* is not a whole number"):
            parse_int("VERSION", bad, 0)
    with pytest.raises(UserError, match="NET_NUM_VAR: -1 is too small; allowed: .* at least 0"):
        parse_int("NET_NUM_VAR", "-1", 0)


def test_parse_scalar_kind_and_minimum():
    astro, = MODELS["NALSM"].prompts
    assert parse_scalar(astro, "0.015") == pytest.approx(0.015)
    assert parse_scalar(astro, "0") == 0.0                       # inclusive minimum
    with pytest.raises(UserError, match=r"ASTRO_W_SCALING: -0.1 is out of range; allowed: a number at least 0"):
        parse_scalar(astro, "-0.1")
    scale = MODELS["LSM"].prompts[0]
    with pytest.raises(UserError, match="INTIAL_ABS_W_SCLR: 0 is out of range; allowed: a number greater than 0"):
        parse_scalar(scale, "0")                                 # exclusive minimum
    for bad in ["x", "nan", "inf", ""]:
        with pytest.raises(UserError, match="INTIAL_ABS_W_SCLR: .* is not a valid answer"):
            parse_scalar(scale, bad)


def test_divisors():
    assert divisors(1) == [1]
    assert divisors(500) == [1, 2, 4, 5, 10, 20, 25, 50, 100, 125, 250, 500]
    assert divisors(40) == [1, 2, 4, 5, 8, 10, 20, 40]


def test_check_batch_size_lists_working_values():
    assert check_batch_size(250, PAPER_SPLITS) == 250
    assert check_batch_size(50, PAPER_SPLITS) == 50
    with pytest.raises(UserError) as info:
        check_batch_size(300, SMALL_SPLITS)
    message = str(info.value)
    assert message.startswith("BATCH_SIZE: 300 does not divide")
    assert ("batch sizes that divide 1000, 500 and 500: "
            "1, 2, 4, 5, 10, 20, 25, 50, 100, 125, 250, 500") in message
    with pytest.raises(UserError, match="BATCH_SIZE: 0 is too small"):
        check_batch_size(0, SMALL_SPLITS)


def test_check_batches_per_block_lists_working_values():
    assert check_batches_per_block(10, 250, PAPER_SPLITS) == 10     # 200, 40, 40 batches
    assert check_batches_per_block(50, 50, PAPER_SPLITS) == 50      # 1000, 200, 200 batches
    with pytest.raises(UserError) as info:
        check_batches_per_block(30, 250, PAPER_SPLITS)
    message = str(info.value)
    assert message.startswith("BATCHS_PER_BLOCK: 30 does not divide")
    assert "train 200, valid 40, test 40" in message
    assert "batches per block that divide 200, 40 and 40: 1, 2, 4, 5, 8, 10, 20, 40" in message


def test_prompt_names_and_texts():
    assert prompt_names("NALSM") == BASE + ["ASTRO_W_SCALING"]
    assert prompt_names("LSM_STDP") == BASE
    assert prompt_names("LSM") == BASE + ["INTIAL_ABS_W_SCLR"]
    assert prompt_names("LSM_APSTDP") == BASE + ["STDP_NEURON_RATE_THESHOLD",
                                                 "STDP_NEURON_RATE_RANGE", "INTIAL_ABS_W_SCLR"]
    texts = [text for _, text in prompt_texts("NALSM")]
    assert texts[:3] == ["GPU? ", "VERSION? [int]: ", "NET_NUM_VAR? [int]: "]
    assert texts[3].startswith("BATCH_SIZE? [int] ") and texts[3].endswith(": ")
    assert texts[4].startswith("BATCHS_PER_BLOCK? [int] ") and texts[4].endswith(": ")
    assert texts[5].startswith("ASTRO_W_SCALING? [float]")


# ---- the dialogue -------------------------------------------------------------------------------

@pytest.mark.parametrize("model", sorted(MODELS))
def test_ask_all_each_model_in_order(model):
    scalars = [EXAMPLE[p.name] for p in MODELS[model].prompts]
    out = io.StringIO()
    answers = ask_all(model, PAPER_SPLITS, lines("0,1", "11", "3", "250", "10", *scalars), out)
    expected = {p.name: float(EXAMPLE[p.name]) for p in MODELS[model].prompts}
    assert answers == Answers("0,1", 11, 3, 250, 10, expected)
    # piped: every prompt is written, in order, followed by the echoed answer
    echoed = out.getvalue().splitlines()
    assert [text + answer for (_, text), answer in
            zip(prompt_texts(model), ["0,1", "11", "3", "250", "10", *scalars])] == echoed
    assert echoed[1] == "VERSION? [int]: 11"


def test_piped_bad_answer_stops_at_once():
    stream = lines("cpu", "abc", "1", "250", "10", "1.0")
    with pytest.raises(UserError) as info:
        ask_all("LSM", PAPER_SPLITS, stream, io.StringIO())
    message = str(info.value)
    assert "VERSION" in message and "'abc'" in message and "whole number" in message
    assert "Answer 2 of 6" in message and "piped" in message
    assert stream.readline() == "1\n"             # nothing after the bad answer was consumed


def test_piped_bad_divisor_stops_with_working_values():
    with pytest.raises(UserError) as info:
        ask_all("LSM", SMALL_SPLITS, lines("cpu", "1", "1", "300", "1", "1.0"), io.StringIO())
    assert "1, 2, 4, 5, 10, 20, 25, 50, 100, 125, 250, 500" in str(info.value)
    with pytest.raises(UserError) as info:
        ask_all("LSM", SMALL_SPLITS, lines("cpu", "1", "1", "100", "3", "1.0"), io.StringIO())
    assert "batches per block that divide 10, 5 and 5: 1, 5" in str(info.value)


def test_too_few_answers_names_the_missing_prompt():
    with pytest.raises(UserError) as info:
        ask_all("LSM_APSTDP", PAPER_SPLITS, lines("cpu", "1", "1", "250", "10", "20"),
                io.StringIO())
    message = str(info.value)
    assert message.startswith("STDP_NEURON_RATE_RANGE: no answer")
    assert "after 6 of 8 answers" in message
    assert ("GPU, VERSION, NET_NUM_VAR, BATCH_SIZE, BATCHS_PER_BLOCK, STDP_NEURON_RATE_THESHOLD, "
            "STDP_NEURON_RATE_RANGE, INTIAL_ABS_W_SCLR") in message
    with pytest.raises(UserError, match="GPU: no answer, the input ended after 0 of 5"):
        ask_all("LSM_STDP", PAPER_SPLITS, io.StringIO(""), io.StringIO())


def test_last_line_without_newline_is_an_answer():
    answers = ask_all("LSM", PAPER_SPLITS, io.StringIO("cpu\n1\n1\n250\n10\n2.5"), io.StringIO())
    assert answers.scalars == {"INTIAL_ABS_W_SCLR": 2.5}


def test_terminal_reasks_after_a_bad_answer():
    stream = FakeTTY("\nabc\n-4\n7\n1\n300\n250\n30\n10\n-1\n0.02\n")
    out = io.StringIO()
    answers = ask_all("NALSM", PAPER_SPLITS, stream, out)
    assert answers == Answers("cpu", 7, 1, 250, 10, {"ASTRO_W_SCALING": 0.02})
    text = out.getvalue()
    assert text.count("VERSION? [int]: ") == 3
    assert text.count("BATCH_SIZE? [int]") == 2
    assert text.count("BATCHS_PER_BLOCK? [int]") == 2
    assert text.count("ASTRO_W_SCALING? [float]") == 2
    assert "VERSION: 'abc' is not a whole number" in text and "Please try again." in text
    assert "batch sizes that divide 50000, 10000 and 10000" in " ".join(text.split())
    assert "piped" not in text
    assert "VERSION? [int]: 7" not in text                 # the terminal echoes, not the script


def test_terminal_end_of_input_is_an_error():
    with pytest.raises(UserError, match="VERSION: no answer"):
        ask_all("LSM", PAPER_SPLITS, FakeTTY("cpu\n"), io.StringIO())
