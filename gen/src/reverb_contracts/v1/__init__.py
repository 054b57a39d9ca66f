"""reverb.v1: generated from proto/reverb_contracts/v1; never edit by hand."""
