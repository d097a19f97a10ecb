# Convenience targets; each is one documented command.
.PHONY: test bench bench-full demo

# The test command CI runs (see .ci/run).
test:
	go test ./...

# Every benchmark at reduced sizes.
bench:
	go run ./bench -quick

# The sizes issues #8 and #18 name (1 GiB download, 1M devices, 100k polling...).
bench-full:
	go run ./bench

demo:
	go run ./cmd/flotilla demo
