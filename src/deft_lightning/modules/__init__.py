"""The two LightningModules: DetectorModule (phase 1) and AdapterModule (phase 2)."""
