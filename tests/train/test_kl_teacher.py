"""The trainer's KL-to-teacher option (used by the end-to-end fine-tune after attention transfer)."""
import pytest
import torch
import torch.nn.functional as F

from ttt_omni.labels import IGNORE_INDEX
from ttt_omni.train.config import TrainConfig
from ttt_omni.train.trainer import Trainer


@pytest.fixture
def teacher_dir(tiny_train_config, tmp_path):
    """The model the runs below start from, saved as they start: a teacher identical to the student."""
    return Trainer(tiny_train_config(output_dir=str(tmp_path / "t"))).export(tmp_path / "t" / "teacher")


def test_kl_is_zero_against_itself_and_is_the_definition(tiny_train_config, teacher_dir, tmp_path):
    trainer = Trainer(tiny_train_config(output_dir=str(tmp_path / "s"), teacher=str(teacher_dir), kl_weight=0.5))
    batch = trainer.task.batch(0)
    with torch.no_grad():
        parts = trainer.losses(batch)
    assert parts["kl"].item() == pytest.approx(0.0, abs=1e-6)
    assert parts["loss"].item() == pytest.approx(parts["lm"].item())
    with torch.no_grad():  # make the student differ, then hold the KL to its definition
        for p in trainer.unwrapped.lm_head.parameters():
            p.add_(0.05 * torch.randn_like(p))
        trainer.carried = {}
        parts = trainer.losses(batch)
        student = trainer.unwrapped(input_ids=batch["input_ids"]).logits.double().log_softmax(-1)
        teacher = trainer.task.teacher(input_ids=batch["input_ids"]).logits.double().log_softmax(-1)
    kept = batch["labels"] != IGNORE_INDEX
    by_hand = (teacher.exp() * (teacher - student)).sum(-1)[kept].mean()
    assert parts["kl"].item() == pytest.approx(by_hand.item(), rel=1e-4)
    assert parts["loss"].item() == pytest.approx(parts["lm"].item() + 0.5 * by_hand.item(), rel=1e-4)


def test_training_with_a_teacher_logs_both_parts(tiny_train_config, teacher_dir, tmp_path):
    import pandas as pd
    trainer = Trainer(tiny_train_config(output_dir=str(tmp_path / "s"), steps=2, teacher=str(teacher_dir),
                                        kl_weight=1.0))
    trainer.train()
    log = pd.read_csv(tmp_path / "s" / "train_log.csv")
    assert {"lm", "kl"} <= set(log.columns) and log["kl"].notna().all()
    assert all(not p.requires_grad for p in trainer.task.teacher.parameters())


@pytest.mark.parametrize("kw", [{"kl_weight": 1.0}, {"teacher": "somewhere"}, {"kl_weight": -1.0, "teacher": "x"}])
def test_teacher_and_weight_come_together(tiny_train_config, kw):
    with pytest.raises(ValueError, match="kl_weight"):
        tiny_train_config(**kw)
