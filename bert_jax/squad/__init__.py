"""SQuAD v1.1/v2.0: reading, windowed features, answer extraction and official scoring."""
