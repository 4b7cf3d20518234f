"""Reports: the clean selection and its summary, result tables and plots."""
