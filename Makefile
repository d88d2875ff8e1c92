# gateway + controlplane. `make` builds bin/, `make run` starts a demo stack,
# `make test` runs every test and ends with "N passed, N failed".
CC      ?= cc
CSTD    := -std=c11 -D_GNU_SOURCE
WARN    := -Wall -Wextra -Werror -Wno-unused-parameter -Wno-format-truncation
OPT     ?= -O2 -g
BUILD   ?= build
BIN     ?= bin
SAN     ?=
CFLAGS_ALL  = $(CSTD) $(WARN) $(OPT) $(SAN) -Icommon -Igateway -I$(BUILD)/proto -I/usr/include/postgresql -MMD -MP
LDFLAGS_ALL = $(SAN)

GW_LIBS := -lpcre2-8 -levhtp -lhiredis -levent -levent_openssl -levent_pthreads -lcurl -lyaml -lnng -lprotobuf-c -lssl -lcrypto -lpthread -lm
# jemalloc (as Redis does): its thread caches make the ~40 allocations a proxied
# request costs (libevhtp headers, libevent buffers) about 4,000 instructions
# cheaper than glibc's malloc. Sanitizer builds keep the sanitizer's allocator.
GW_MALLOC = $(if $(SAN),,-ljemalloc)
CP_LIBS := -lpcre2-8 -lmicrohttpd -lpq -lyaml -lnng -lprotobuf-c -lssl -lcrypto -lpthread -lm

COMMON_SRC := $(wildcard common/*.c)
GW_SRC     := $(wildcard gateway/*.c gateway/providers/*.c)
GW_LIB_SRC := $(filter-out gateway/main.c,$(GW_SRC))
# the control plane compiles guardrail policies as the gateway does, to refuse bad ones
CP_SRC     := $(wildcard controlplane/*.c controlplane/api/*.c) gateway/guard.c gateway/guardcfg.c
CP_LIB_SRC := $(filter-out controlplane/main.c,$(CP_SRC))
UNIT_SRC   := $(wildcard tests/unit/*_test.c)
# protobuf definitions: C is generated into $(BUILD)/proto by protoc-c, never committed
PROTO_SRC  := $(wildcard proto/*.proto)
PROTO_GEN_C := $(patsubst proto/%.proto,$(BUILD)/proto/%.pb-c.c,$(PROTO_SRC))
PROTO_GEN_H := $(PROTO_GEN_C:.c=.h)
PROTO_OBJ  := $(PROTO_GEN_C:.c=.o)

# test-only protobuf definitions (tests/proto/): generated into $(BUILD)/tests/proto
# and linked into the unit tests that decode with them, never into the programs
TEST_PROTO_SRC := $(wildcard tests/proto/*.proto)
TEST_PROTO_GEN_C := $(patsubst tests/proto/%.proto,$(BUILD)/tests/proto/%.pb-c.c,$(TEST_PROTO_SRC))
TEST_PROTO_OBJ := $(TEST_PROTO_GEN_C:.c=.o)

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))

BINS := $(BIN)/gateway $(if $(CP_SRC),$(BIN)/controlplane)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: default all deps run test asan unit integration clean bench
# plain `make` installs missing Debian packages first, like every other target
default: deps
	@$(MAKE) --no-print-directory all
all: $(BINS)

deps:
	@scripts/deps.sh

$(BUILD)/proto/%.pb-c.c $(BUILD)/proto/%.pb-c.h: proto/%.proto
	@mkdir -p $(BUILD)/proto
	protoc-c --c_out=$(BUILD)/proto -Iproto $<

$(PROTO_OBJ): %.o: %.c
	$(CC) $(CFLAGS_ALL) -Wno-unused-parameter -c $< -o $@

$(BUILD)/tests/proto/%.pb-c.c $(BUILD)/tests/proto/%.pb-c.h: tests/proto/%.proto
	@mkdir -p $(BUILD)/tests/proto
	protoc-c --c_out=$(BUILD)/tests/proto -Itests/proto $<

$(TEST_PROTO_OBJ): %.o: %.c
	$(CC) $(CFLAGS_ALL) -Wno-unused-parameter -c $< -o $@

# trace_test decodes the exporter's OTLP protobuf with protoc-c's code
$(BUILD)/tests/unit/trace_test.o: $(BUILD)/tests/proto/otlp_trace.pb-c.h
$(BUILD)/tests/unit/trace_test.o: CFLAGS_ALL += -I$(BUILD)/tests/proto
$(BUILD)/tests/trace_test: $(BUILD)/tests/proto/otlp_trace.pb-c.o

$(BUILD)/%.o: %.c | $(PROTO_GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BIN)/gateway: $(call obj,$(GW_SRC) $(COMMON_SRC)) $(PROTO_OBJ)
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(GW_LIBS) $(GW_MALLOC)

$(BIN)/controlplane: $(call obj,$(CP_SRC) $(COMMON_SRC)) $(PROTO_OBJ)
	@mkdir -p $(BIN)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(CP_LIBS)

# Unit tests link against archives of everything but the programs' main(),
# so each test pulls in only the objects it uses.
$(BUILD)/libgw.a: $(call obj,$(GW_LIB_SRC))
	@rm -f $@; ar rcs $@ $^
$(BUILD)/libcp.a: $(call obj,$(CP_LIB_SRC))
	@rm -f $@; ar rcs $@ $^
$(BUILD)/libcommon.a: $(call obj,$(COMMON_SRC)) $(PROTO_OBJ)
	@rm -f $@; ar rcs $@ $^
TEST_LIBS := $(BUILD)/libgw.a $(if $(CP_LIB_SRC),$(BUILD)/libcp.a) $(BUILD)/libcommon.a
$(BUILD)/tests/%_test: $(BUILD)/tests/unit/%_test.o $(TEST_LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(sort $(GW_LIBS) $(CP_LIBS))

# benchmarks (tests/bench/): built on demand, never by make test's unit pass
BENCH_BINS := $(patsubst tests/bench/%.c,$(BUILD)/bench/%,$(wildcard tests/bench/*.c))
$(BUILD)/bench/%: tests/bench/%.c $(TEST_LIBS) | $(PROTO_GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $< $(TEST_LIBS) $(sort $(GW_LIBS) $(CP_LIBS))
bench: $(BENCH_BINS)

unit: $(UNIT_BINS)
	@tests/run_all.sh $(BUILD) $(BIN) unit

run: deps all
	@scripts/run.sh

test: deps
	@$(MAKE) --no-print-directory all $(UNIT_BINS)
	@tests/run_all.sh $(BUILD) $(BIN)

# Same tests, built with AddressSanitizer + UndefinedBehaviorSanitizer in build-asan/.
asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan BIN=build-asan/bin OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" all \
	  $(patsubst $(BUILD)/%,build-asan/%,$(UNIT_BINS))
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  GW_ASAN=1 tests/run_all.sh build-asan build-asan/bin

clean:
	rm -rf build build-asan bin

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# ---- fuzzing (tests/fuzz/): one libFuzzer target per parser of outside input,
# built with clang + ASan + UBSan into build-fuzz/ (never mixed with build/).
# `make fuzz` runs each target FUZZ_SECONDS (default 600), FUZZ_JOBS at once;
# `make test` runs each briefly through tests/integration/suite_fuzz.sh.
FUZZ_SECONDS ?= 600
FUZZ_NAMES   := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/*.c))
FUZZ_MAKE     = $(MAKE) --no-print-directory CC=clang BUILD=build-fuzz BIN=build-fuzz/bin \
  OPT="-O1 -g -fno-omit-frame-pointer" WARN="$(WARN) -Wno-unknown-warning-option" \
  SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
.PHONY: fuzz fuzz-build
# used by the sub-make (BUILD=build-fuzz): link one target against the archives
$(BUILD)/fuzz/%: tests/fuzz/%.c $(TEST_LIBS) | $(PROTO_GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(OPT) $(SAN) -fsanitize=fuzzer -Icommon -Igateway -Icontrolplane -I$(BUILD)/proto \
	  -I/usr/include/postgresql $< -o $@ $(TEST_LIBS) $(sort $(GW_LIBS) $(CP_LIBS))
fuzz-build:
	+@$(FUZZ_MAKE) $(patsubst $(BUILD)/%,build-fuzz/%,$(PROTO_GEN_H)) $(addprefix build-fuzz/fuzz/,$(FUZZ_NAMES))
fuzz: fuzz-build
	@tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_NAMES)

# ---- load and soak test (tests/soak/): a 2-worker gateway under mixed traffic
# on loopback for SOAK_SECONDS (default 300); prints the report, fails on a
# broken bound (5xx not caused by an upstream, RSS or fd growth, a dead worker).
SOAK_SECONDS ?= 300
.PHONY: soak
soak: all
	@SOAK_SECONDS=$(SOAK_SECONDS) GW_BIN_DIR=$${GW_BIN_DIR:-$(CURDIR)/$(BIN)} tests/soak/soak.sh

# ---- static analysis: cppcheck + clang-tidy (.clang-tidy) over gateway/,
# controlplane/ and common/; clean = nothing outside tests/analyze/baseline.txt.
.PHONY: analyze
analyze: $(PROTO_GEN_H)
	@BUILD=$(BUILD) tests/analyze/analyze.sh
