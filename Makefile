PYTHON ?= python
FUZZ_CASES ?= 5000
FUZZ_MINUTES ?= 10

.PHONY: fuzz robustness-table

# A longer fuzzing campaign than the one CI runs (tests/test_fuzz.py); see docs/robustness.md.
fuzz:
	$(PYTHON) scripts/fuzz.py --cases $(FUZZ_CASES) --minutes $(FUZZ_MINUTES)

# The table of hostile inputs and their error lines in docs/robustness.md.
robustness-table:
	$(PYTHON) scripts/robustness_table.py
