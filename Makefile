# Convenience targets; each is one documented command.
.PHONY: test bench bench-full demo

# The test command CI runs (see .ci/run).
test:
	go test ./...

# Every benchmark at reduced sizes: under 10 minutes on a 2-core machine.
bench:
	go run ./bench -quick

# The sizes issue #8 names (1 GiB download, 1M devices, 10k polling...).
bench-full:
	go run ./bench

demo:
	go run ./cmd/flotilla demo
