"""What the hardware does: the catalog of accelerators and models, the roofline step time and
the power/clock model."""
