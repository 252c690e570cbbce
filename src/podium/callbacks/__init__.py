"""The Lightning callbacks podium adds: checkpoints that survive a resume, the prediction
files, reports and curves, guards, weight averaging, fine-tuning, epoch lines."""
