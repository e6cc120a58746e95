"""accel.deepspeed: DeepSpeed ZeRO behind the Accelerator."""
