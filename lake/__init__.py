"""The lake: Delta tables under ``NIGHTJAR_HOME/lake``, committed once per micro-batch."""
