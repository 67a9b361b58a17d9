// Tests of the linearizability checker: hand-written histories with known
// verdicts, the tie and indeterminate-operation rules, a generic model, the
// budgets, and randomized histories that are linearizable by construction
// (and mutations of them that are not).
#include "check/linearizability.h"

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace raftkv::check {
namespace {

constexpr int64_t kNever = kUnknownReturnTime;

// Checks with no budget; `explanation` may be null.
CheckResult Check(const std::vector<KvOperation>& history,
                  std::string* explanation = nullptr,
                  const CheckOptions& options = {}) {
  return CheckKvHistory(history, options, explanation);
}

// Fails with the explanation when `history` does not get `expected`.
void ExpectResult(const std::vector<KvOperation>& history,
                  CheckResult expected) {
  std::string explanation;
  EXPECT_EQ(Check(history, &explanation), expected) << explanation;
}

void ExpectOk(const std::vector<KvOperation>& history) {
  ExpectResult(history, CheckResult::kOk);
}

void ExpectIllegal(const std::vector<KvOperation>& history) {
  ExpectResult(history, CheckResult::kIllegal);
}

TEST(LinearizabilityTest, EmptyHistoryIsOk) {
  std::string explanation;
  EXPECT_EQ(Check({}, &explanation), CheckResult::kOk);
  EXPECT_NE(explanation.find("linearizable"), std::string::npos);
  EXPECT_EQ(Check({}, nullptr), CheckResult::kOk);
}

TEST(LinearizabilityTest, SequentialPutGetIsOk) {
  ExpectOk({
      KvGet(0, "x", std::nullopt, 0, 10),
      KvPut(0, "x", "1", 20, 30),
      KvGet(1, "x", "1", 40, 50),
      KvPut(1, "x", "2", 60, 70),
      KvGet(0, "x", "2", 80, 90),
  });
}

TEST(LinearizabilityTest, StaleReadAfterCompletedWriteIsIllegal) {
  const std::vector<KvOperation> history = {
      KvPut(0, "x", "1", 0, 10),
      KvGet(1, "x", std::nullopt, 20, 30),
  };
  std::string explanation;
  ASSERT_EQ(Check(history, &explanation), CheckResult::kIllegal);
  EXPECT_NE(explanation.find("partition \"x\""), std::string::npos)
      << explanation;
  EXPECT_NE(explanation.find("longest linearizable prefix found: 1 of 2"),
            std::string::npos)
      << explanation;
  EXPECT_NE(explanation.find("Put(\"x\", \"1\")"), std::string::npos)
      << explanation;
  EXPECT_NE(explanation.find("state after the prefix: \"1\""),
            std::string::npos)
      << explanation;
  EXPECT_NE(explanation.find("#1 client 1: Get(\"x\") -> absent [call 20, "
                             "return 30]"),
            std::string::npos)
      << explanation;
}

TEST(LinearizabilityTest, ReadConcurrentWithWriteSeesOldOrNew) {
  const KvOperation put0 = KvPut(0, "x", "0", 0, 10);
  const KvOperation put1 = KvPut(0, "x", "1", 20, 100);
  ExpectOk({put0, put1, KvGet(1, "x", "0", 30, 40)});
  ExpectOk({put0, put1, KvGet(1, "x", "1", 30, 40)});
  // Old then new is fine too.
  ExpectOk(
      {put0, put1, KvGet(1, "x", "0", 30, 40), KvGet(1, "x", "1", 50, 60)});
  // A value nobody wrote is not.
  ExpectIllegal({put0, put1, KvGet(1, "x", "2", 30, 40)});
}

TEST(LinearizabilityTest, NewThenOldReadsDuringWriteAreIllegal) {
  ExpectIllegal({
      KvPut(0, "x", "0", 0, 10),
      KvPut(0, "x", "1", 20, 100),
      KvGet(1, "x", "1", 30, 40),
      KvGet(1, "x", "0", 50, 60),
  });
  // Two different clients reading in real-time order: also illegal.
  ExpectIllegal({
      KvPut(0, "x", "0", 0, 10),
      KvPut(0, "x", "1", 20, 100),
      KvGet(1, "x", "1", 30, 40),
      KvGet(2, "x", "0", 50, 60),
  });
  // If the two reads overlap, either order is possible.
  ExpectOk({
      KvPut(0, "x", "0", 0, 10),
      KvPut(0, "x", "1", 20, 100),
      KvGet(1, "x", "1", 30, 55),
      KvGet(2, "x", "0", 50, 60),
  });
}

TEST(LinearizabilityTest, DeleteMakesKeyAbsent) {
  ExpectOk({
      KvPut(0, "x", "1", 0, 10),
      KvDelete(0, "x", 20, 30),
      KvGet(1, "x", std::nullopt, 40, 50),
  });
  ExpectIllegal({
      KvPut(0, "x", "1", 0, 10),
      KvDelete(0, "x", 20, 30),
      KvGet(1, "x", "1", 40, 50),
  });
}

TEST(LinearizabilityTest, LostAppendIsIllegal) {
  // Sequential appends, result not observed; the later read lost "a".
  ExpectIllegal({
      KvAppend(0, "x", "a", std::nullopt, 0, 10),
      KvAppend(1, "x", "b", std::nullopt, 20, 30),
      KvGet(2, "x", "b", 40, 50),
  });
  // Concurrent appends: still both must be there.
  ExpectIllegal({
      KvAppend(0, "x", "a", std::nullopt, 0, 10),
      KvAppend(1, "x", "b", std::nullopt, 0, 10),
      KvGet(2, "x", "b", 40, 50),
  });
  ExpectOk({
      KvAppend(0, "x", "a", std::nullopt, 0, 10),
      KvAppend(1, "x", "b", std::nullopt, 0, 10),
      KvGet(2, "x", "ba", 40, 50),
  });
}

TEST(LinearizabilityTest, DuplicatedAppendIsIllegal) {
  ExpectIllegal({
      KvAppend(0, "x", "a", "a", 0, 10),
      KvGet(1, "x", "aa", 20, 30),
  });
  // Even when the append is indeterminate (a retried request applied twice).
  ExpectIllegal({
      KvAppend(0, "x", "a", std::nullopt, 0, kNever),
      KvGet(1, "x", "aa", 20, 30),
  });
}

TEST(LinearizabilityTest, AppendsOutOfRealTimeOrderAreIllegal) {
  const KvOperation a = KvAppend(0, "x", "a", std::nullopt, 0, 10);
  const KvOperation b = KvAppend(1, "x", "b", std::nullopt, 20, 30);
  ExpectIllegal({a, b, KvGet(2, "x", "ba", 40, 50)});
  ExpectOk({a, b, KvGet(2, "x", "ab", 40, 50)});
}

TEST(LinearizabilityTest, AppendResultMustMatch) {
  ExpectOk({
      KvAppend(0, "x", "a", "a", 0, 10),
      KvAppend(1, "x", "b", "ab", 20, 30),
  });
  // The second append reports a value that ignores the first.
  ExpectIllegal({
      KvAppend(0, "x", "a", "a", 0, 10),
      KvAppend(1, "x", "b", "b", 20, 30),
  });
  // Concurrent appends that both claim to be first.
  ExpectIllegal({
      KvAppend(0, "x", "a", "a", 0, 10),
      KvAppend(1, "x", "b", "b", 0, 10),
  });
  ExpectOk({
      KvAppend(0, "x", "a", "ba", 0, 10),
      KvAppend(1, "x", "b", "b", 0, 10),
  });
}

TEST(LinearizabilityTest, IndeterminatePutMayTakeEffectLater) {
  ExpectOk({
      KvPut(0, "x", "1", 0, kNever),
      KvGet(1, "x", std::nullopt, 10, 20),
      KvGet(1, "x", "1", 30, 40),
  });
  // Or never.
  ExpectOk({
      KvPut(0, "x", "1", 0, kNever),
      KvGet(1, "x", std::nullopt, 10, 20),
      KvGet(1, "x", std::nullopt, 30, 40),
  });
  // Even after a later completed write.
  ExpectOk({
      KvPut(0, "x", "1", 0, kNever),
      KvPut(1, "x", "2", 10, 20),
      KvGet(1, "x", "1", 30, 40),
  });
}

TEST(LinearizabilityTest, IndeterminatePutThatAppearsAndDisappearsIsIllegal) {
  std::string explanation;
  ASSERT_EQ(Check(
                {
                    KvPut(0, "x", "1", 0, kNever),
                    KvGet(1, "x", "1", 10, 20),
                    KvGet(1, "x", std::nullopt, 30, 40),
                },
                &explanation),
            CheckResult::kIllegal);
  EXPECT_NE(explanation.find("Put(\"x\", \"1\") -> ? [call 0, return unknown]"),
            std::string::npos)
      << explanation;
}

TEST(LinearizabilityTest, IndeterminateOperationCannotTakeEffectBeforeItsCall) {
  ExpectIllegal({
      KvGet(1, "x", "1", 0, 5),
      KvPut(0, "x", "1", 10, kNever),
  });
}

TEST(LinearizabilityTest, IndeterminateOutputsAreIgnored) {
  // A timed-out Get: whatever was recorded as its output does not matter.
  ExpectOk({
      KvPut(0, "x", "1", 0, 10),
      KvGet(1, "x", "garbage", 20, kNever),
  });
  // A timed-out append: it took effect before "b", or never.
  ExpectOk({
      KvAppend(0, "x", "a", "garbage", 0, kNever),
      KvAppend(1, "x", "b", "ab", 10, 20),
  });
  ExpectOk({
      KvAppend(0, "x", "a", "garbage", 0, kNever),
      KvAppend(1, "x", "b", "b", 10, 20),
      KvGet(1, "x", "ba", 30, 40),
  });
}

TEST(LinearizabilityTest, IndeterminateCompareAndSetFollowsItsSemantics) {
  // It may have succeeded...
  ExpectOk({
      KvCompareAndSet(0, "x", std::nullopt, "1", false, 0, kNever),
      KvGet(1, "x", "1", 10, 20),
  });
  // ...but not if the key was set before it was called.
  ExpectIllegal({
      KvPut(1, "x", "0", 0, 5),
      KvCompareAndSet(0, "x", std::nullopt, "1", false, 10, kNever),
      KvGet(1, "x", "1", 20, 30),
  });
}

TEST(LinearizabilityTest, CompareAndSetSemantics) {
  // Create-if-absent, then swap from the current value.
  ExpectOk({
      KvCompareAndSet(0, "x", std::nullopt, "1", true, 0, 10),
      KvCompareAndSet(0, "x", "1", "2", true, 20, 30),
      KvCompareAndSet(1, "x", "1", "3", false, 40, 50),
      KvGet(1, "x", "2", 60, 70),
  });
  // Reporting success when the value did not match.
  ExpectIllegal({
      KvPut(0, "x", "0", 0, 10),
      KvCompareAndSet(1, "x", "1", "2", true, 20, 30),
  });
  // Reporting failure when the value matched.
  ExpectIllegal({
      KvPut(0, "x", "1", 0, 10),
      KvCompareAndSet(1, "x", "1", "2", false, 20, 30),
  });
  // A failed CAS must not change the value.
  ExpectIllegal({
      KvPut(0, "x", "0", 0, 10),
      KvCompareAndSet(1, "x", "1", "2", false, 20, 30),
      KvGet(1, "x", "2", 40, 50),
  });
  // Two concurrent CASes from the same value cannot both succeed...
  ExpectIllegal({
      KvPut(0, "x", "0", 0, 10),
      KvCompareAndSet(1, "x", "0", "1", true, 20, 30),
      KvCompareAndSet(2, "x", "0", "2", true, 20, 30),
  });
  // ...but one may win, either one.
  ExpectOk({
      KvPut(0, "x", "0", 0, 10),
      KvCompareAndSet(1, "x", "0", "1", false, 20, 30),
      KvCompareAndSet(2, "x", "0", "2", true, 20, 30),
      KvGet(0, "x", "2", 40, 50),
  });
  // Expecting absence fails on a present key.
  ExpectIllegal({
      KvPut(0, "x", "0", 0, 10),
      KvCompareAndSet(1, "x", std::nullopt, "1", true, 20, 30),
  });
}

TEST(LinearizabilityTest, ReturnAtTheSameTimeAsACallPrecedesIt) {
  // The put returns at 10, the get is called at 10: not concurrent.
  ExpectIllegal({
      KvPut(0, "x", "1", 0, 10),
      KvGet(1, "x", std::nullopt, 10, 20),
  });
  // The get returns at 10, the put is called at 10: the get came first.
  ExpectIllegal({
      KvGet(1, "x", "1", 0, 10),
      KvPut(0, "x", "1", 10, 20),
  });
  // Returns at the same time are concurrent with each other.
  ExpectOk({
      KvPut(0, "x", "1", 0, 10),
      KvGet(1, "x", std::nullopt, 5, 10),
  });
}

TEST(LinearizabilityTest, InstantaneousOperations) {
  // Instantaneous operations at the same time are concurrent.
  ExpectOk({
      KvPut(0, "x", "1", 10, 10),
      KvGet(1, "x", std::nullopt, 10, 10),
  });
  ExpectOk({
      KvPut(0, "x", "1", 10, 10),
      KvGet(1, "x", "1", 10, 10),
  });
  // They follow what returns at their time and precede what is called then.
  ExpectIllegal({
      KvPut(0, "x", "1", 0, 10),
      KvGet(1, "x", std::nullopt, 10, 10),
  });
  ExpectIllegal({
      KvPut(0, "x", "1", 10, 10),
      KvGet(1, "x", std::nullopt, 10, 20),
  });
}

TEST(LinearizabilityTest, MalformedHistoryIsUnknown) {
  std::string explanation;
  EXPECT_EQ(Check({KvPut(0, "x", "1", 0, 10), KvGet(0, "x", "1", 20, 15)},
                  &explanation),
            CheckResult::kUnknown);
  EXPECT_NE(explanation.find("invalid history: operation #1"),
            std::string::npos)
      << explanation;
}

TEST(LinearizabilityTest, KeysAreIndependentAndTheFailingKeyIsNamed) {
  const std::vector<KvOperation> history = {
      KvPut(0, "x", "1", 0, 10),
      KvPut(1, "y", "1", 0, 10),
      // x: a read concurrent with a later write; fine.
      KvPut(0, "x", "2", 20, 40),
      KvGet(1, "x", "1", 25, 35),
      // y: a stale read.
      KvPut(2, "y", "2", 20, 30),
      KvGet(3, "y", "1", 35, 45),
      // A get of y that would be fine for x's history, and vice versa.
      KvGet(3, "x", "2", 50, 60),
  };
  std::string explanation;
  ASSERT_EQ(Check(history, &explanation), CheckResult::kIllegal);
  EXPECT_NE(explanation.find("partition \"y\""), std::string::npos)
      << explanation;
  EXPECT_EQ(explanation.find("partition \"x\""), std::string::npos)
      << explanation;
  EXPECT_NE(explanation.find("Get(\"y\") -> \"1\""), std::string::npos)
      << explanation;

  // Without the y violation, the same interleaving is linearizable.
  std::vector<KvOperation> fixed = history;
  fixed[5].output.value = "2";
  ExpectOk(fixed);
  // A value written to one key never satisfies a read of another.
  fixed[6].input.key = "z";
  ExpectIllegal(fixed);
}

// A counter, to show the checker works with models other than KvModel.
struct CounterInput {
  bool increment = false;
};
struct CounterOutput {
  int64_t value = 0;
};
class CounterModel {
 public:
  using Input = CounterInput;
  using Output = CounterOutput;
  using State = int64_t;
  State Init() const { return 0; }
  std::string PartitionKey(const CounterInput&) const { return "counter"; }
  std::optional<State> Step(const State& state, const CounterInput& input,
                            const CounterOutput* output) const {
    const State next = input.increment ? state + 1 : state;
    if (output != nullptr && output->value != next) return std::nullopt;
    return next;
  }
  std::string DescribeOperation(const CounterInput& input,
                                const CounterOutput* output) const {
    return absl::StrCat(
        input.increment ? "Increment" : "Read", "() -> ",
        output == nullptr ? std::string("?") : absl::StrCat(output->value));
  }
  std::string DescribeState(const State& state) const {
    return absl::StrCat(state);
  }
};
static_assert(Model<CounterModel>);
static_assert(Model<KvModel>);

using CounterOperation = Operation<CounterInput, CounterOutput>;

CounterOperation Counter(bool increment, int64_t value, int64_t call,
                         int64_t ret) {
  CounterOperation op;
  op.input.increment = increment;
  op.output.value = value;
  op.call_time = call;
  op.return_time = ret;
  return op;
}

TEST(LinearizabilityTest, GenericModel) {
  const CounterModel model;
  std::string explanation;
  EXPECT_EQ(CheckHistory(model,
                         std::vector<CounterOperation>{
                             Counter(true, 2, 0, 10),
                             Counter(true, 1, 0, 10),
                             Counter(false, 2, 20, 30),
                         },
                         {}, &explanation),
            CheckResult::kOk)
      << explanation;
  // Two increments cannot both return 1.
  EXPECT_EQ(CheckHistory(model,
                         std::vector<CounterOperation>{
                             Counter(true, 1, 0, 10),
                             Counter(true, 1, 0, 10),
                         },
                         {}, &explanation),
            CheckResult::kIllegal);
  EXPECT_NE(explanation.find("partition \"counter\""), std::string::npos)
      << explanation;
  EXPECT_NE(explanation.find("Increment() -> 1"), std::string::npos)
      << explanation;
}

// Many concurrent puts followed by a read of a value none of them wrote: the
// search must try every order before it can say so.
std::vector<KvOperation> PathologicalHistory(int writers) {
  std::vector<KvOperation> history;
  for (int i = 0; i < writers; ++i) {
    history.push_back(KvPut(i, "x", absl::StrCat("v", i), 0, 100));
  }
  history.push_back(KvGet(writers, "x", "nobody wrote this", 200, 210));
  return history;
}

TEST(LinearizabilityTest, StepBudgetExhaustedIsUnknown) {
  const std::vector<KvOperation> history = PathologicalHistory(12);
  std::string explanation;
  EXPECT_EQ(Check(history, &explanation, {.max_steps = 100}),
            CheckResult::kUnknown);
  EXPECT_NE(explanation.find("budget of 100 steps"), std::string::npos)
      << explanation;
  EXPECT_NE(explanation.find("partition \"x\""), std::string::npos)
      << explanation;
  // With enough budget the verdict is definite.
  EXPECT_EQ(Check(history, &explanation), CheckResult::kIllegal);
}

TEST(LinearizabilityTest, IllegalPartitionWinsOverUnknownOne) {
  // "a" exhausts the budget; "b" is clearly illegal and is still reported.
  std::vector<KvOperation> history = PathologicalHistory(12);
  for (KvOperation& op : history) op.input.key = "a";
  history.push_back(KvPut(0, "b", "1", 0, 10));
  history.push_back(KvGet(1, "b", std::nullopt, 20, 30));
  std::string explanation;
  EXPECT_EQ(Check(history, &explanation, {.max_steps = 100}),
            CheckResult::kIllegal);
  EXPECT_NE(explanation.find("partition \"b\""), std::string::npos)
      << explanation;
}

TEST(LinearizabilityTest, TimeoutIsUnknown) {
  std::string explanation;
  EXPECT_EQ(Check(PathologicalHistory(12), &explanation,
                  {.timeout = absl::ZeroDuration()}),
            CheckResult::kUnknown);
  EXPECT_NE(explanation.find("timeout"), std::string::npos) << explanation;
}

// ---------------------------------------------------------------------------
// Randomized histories, linearizable by construction: each operation gets a
// linearization point strictly inside its interval, and outputs come from
// applying the operations to a sequential store in the order of those points.

struct GeneratorOptions {
  int clients = 5;
  int ops_per_client = 30;
  int keys = 2;
  // Call to linearization point, and point to return: 1..max_latency.
  int max_latency = 20;
  // Between a client's return and its next call: 0..max_think.
  int max_think = 10;
  // Chance that an operation times out (becomes indeterminate).
  double indeterminate = 0.03;
  // Chances of each type; the rest are Gets.
  double put = 0.25;
  double append = 0.15;
  double del = 0.05;
  double cas = 0.15;
};

// Values are unique: puts write "p<n>", CASes "c<n>", appends add "+<n>", so
// only appends produce values containing '+'.
std::vector<KvOperation> GenerateHistory(std::mt19937_64& rng,
                                         const GeneratorOptions& options) {
  auto uniform = [&rng](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  auto chance = [&rng](double p) {
    return std::uniform_real_distribution<double>(0, 1)(rng) < p;
  };
  std::vector<KvOperation> history;
  // Linearization point of each operation; nullopt if it never takes effect.
  std::vector<std::optional<int64_t>> point;
  for (int c = 0; c < options.clients; ++c) {
    int64_t t = uniform(0, options.max_think);
    for (int k = 0; k < options.ops_per_client; ++k) {
      KvOperation op;
      op.client_id = c;
      op.input.key = absl::StrCat("k", uniform(0, options.keys - 1));
      const double r = std::uniform_real_distribution<double>(0, 1)(rng);
      if (r < options.put) {
        op.input.type = KvOpType::kPut;
      } else if (r < options.put + options.append) {
        op.input.type = KvOpType::kAppend;
      } else if (r < options.put + options.append + options.del) {
        op.input.type = KvOpType::kDelete;
      } else if (r < options.put + options.append + options.del + options.cas) {
        op.input.type = KvOpType::kCompareAndSet;
      } else {
        op.input.type = KvOpType::kGet;
      }
      op.call_time = t;
      if (chance(options.indeterminate)) {
        // Timed out: it takes effect at some point, maybe much later, or
        // never; the client gives up and moves on.
        op.return_time = kNever;
        point.push_back(chance(0.5)
                            ? std::optional<int64_t>(
                                  t + uniform(1, 10 * options.max_latency))
                            : std::nullopt);
        t += 2 * options.max_latency + uniform(0, options.max_think);
      } else {
        const int64_t p = t + uniform(1, options.max_latency);
        op.return_time = p + uniform(1, options.max_latency);
        point.push_back(p);
        t = op.return_time + uniform(0, options.max_think);
      }
      history.push_back(std::move(op));
    }
  }
  std::vector<size_t> order(history.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  // Operations that never take effect go last (their outputs are ignored).
  std::sort(order.begin(), order.end(), [&point](size_t a, size_t b) {
    const int64_t pa = point[a].value_or(kNever);
    const int64_t pb = point[b].value_or(kNever);
    return pa != pb ? pa < pb : a < b;
  });
  std::map<std::string, std::optional<std::string>> store;
  int next_value = 0;
  for (size_t i : order) {
    KvOperation& op = history[i];
    std::optional<std::string>& value = store[op.input.key];
    const bool applies = point[i].has_value();
    const std::string n = absl::StrCat(next_value++);
    switch (op.input.type) {
      case KvOpType::kGet:
        op.output.value = value;
        break;
      case KvOpType::kPut:
        op.input.value = "p" + n;
        if (applies) value = op.input.value;
        break;
      case KvOpType::kDelete:
        if (applies) value = std::nullopt;
        break;
      case KvOpType::kAppend: {
        op.input.value = "+" + n;
        const std::string result = value.value_or("") + op.input.value;
        if (!chance(0.2)) op.output.value = result;
        if (applies) value = result;
        break;
      }
      case KvOpType::kCompareAndSet:
        op.input.value = "c" + n;
        if (chance(0.5)) {
          op.input.expected = value;
        } else if (chance(0.5)) {
          op.input.expected = std::nullopt;
        } else {
          op.input.expected = absl::StrCat("p", uniform(0, next_value));
        }
        op.output.succeeded = value == op.input.expected;
        if (applies && op.output.succeeded) value = op.input.value;
        break;
    }
  }
  return history;
}

// The index of a determinate Put on `key` returning before `before`, the
// latest to be called; or -1.
int LatestPutBefore(const std::vector<KvOperation>& history,
                    const std::string& key, int64_t before) {
  int best = -1;
  for (size_t i = 0; i < history.size(); ++i) {
    const KvOperation& op = history[i];
    if (op.input.type == KvOpType::kPut && op.input.key == key &&
        !op.indeterminate() && op.return_time < before &&
        (best < 0 || op.call_time > history[best].call_time)) {
      best = static_cast<int>(i);
    }
  }
  return best;
}

TEST(LinearizabilityTest, RandomLinearizableHistoriesAndMutations) {
  constexpr int kHistories = 200;
  int never_written = 0;
  int overwritten = 0;
  for (int seed = 1; seed <= kHistories; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    std::mt19937_64 rng(seed);
    const std::vector<KvOperation> history =
        GenerateHistory(rng, GeneratorOptions{});
    std::string explanation;
    ASSERT_EQ(Check(history, &explanation), CheckResult::kOk)
        << "seed " << seed << "\n"
        << explanation;

    // The determinate Gets, in a random order.
    std::vector<size_t> gets;
    for (size_t i = 0; i < history.size(); ++i) {
      if (history[i].input.type == KvOpType::kGet &&
          !history[i].indeterminate()) {
        gets.push_back(i);
      }
    }
    std::shuffle(gets.begin(), gets.end(), rng);
    if (gets.empty()) continue;

    // Mutation 1: a Get reads a value nobody wrote.
    std::vector<KvOperation> mutated = history;
    mutated[gets[0]].output.value = "never written";
    EXPECT_EQ(Check(mutated, &explanation), CheckResult::kIllegal)
        << "seed " << seed << ": Get #" << gets[0] << " reads a value never "
        << "written\n"
        << explanation;
    ++never_written;

    // Mutation 2: a Get reads a value p1 wrote, though a put p2 called after
    // p1 returned had returned before the Get was called. Values are unique
    // and only p1 writes its value, so this cannot be linearized.
    for (size_t g : gets) {
      const KvOperation& get = history[g];
      const int p2 = LatestPutBefore(history, get.input.key, get.call_time);
      if (p2 < 0) continue;
      const int p1 =
          LatestPutBefore(history, get.input.key, history[p2].call_time);
      if (p1 < 0) continue;
      mutated = history;
      mutated[g].output.value = history[p1].input.value;
      EXPECT_EQ(Check(mutated, &explanation), CheckResult::kIllegal)
          << "seed " << seed << ": Get #" << g << " reads the value of Put #"
          << p1 << ", overwritten by Put #" << p2 << "\n"
          << explanation;
      ++overwritten;
      break;
    }
  }
  EXPECT_EQ(never_written, kHistories);
  // Most histories have such a Get; make sure the mutation was exercised.
  EXPECT_GE(overwritten, kHistories / 2);
  std::cout << "mutations: " << never_written << " never-written reads, "
            << overwritten << " overwritten reads\n";
}

TEST(LinearizabilityTest, RandomHistoriesOfPutsAndGetsOnOneKey) {
  // A plain register with heavy overlap: more interleavings per operation.
  GeneratorOptions options;
  options.keys = 1;
  options.max_think = 2;
  options.append = 0;
  options.del = 0;
  options.cas = 0;
  options.put = 0.5;
  for (int seed = 1; seed <= 100; ++seed) {
    std::mt19937_64 rng(1000 + seed);
    const std::vector<KvOperation> history = GenerateHistory(rng, options);
    std::string explanation;
    ASSERT_EQ(Check(history, &explanation), CheckResult::kOk)
        << "seed " << 1000 + seed << "\n"
        << explanation;
  }
}

// Not a timed assertion: it is here so that a slow checker shows up in the
// test times. 5 clients x 400 operations on one key, mostly concurrent.
TEST(LinearizabilityTest, PerformanceSanity) {
  GeneratorOptions options;
  options.keys = 1;
  options.ops_per_client = 400;
  options.max_think = 2;
  options.indeterminate = 0.005;
  std::mt19937_64 rng(42);
  const std::vector<KvOperation> history = GenerateHistory(rng, options);
  ASSERT_EQ(history.size(), 2000u);
  std::string explanation;
  ASSERT_EQ(Check(history, &explanation), CheckResult::kOk) << explanation;
  std::cout << explanation << "\n";
}

}  // namespace
}  // namespace raftkv::check
