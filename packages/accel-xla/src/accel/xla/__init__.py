"""accel.xla: torch-xla behind the Accelerator."""
