#include "storage/keys.h"

#include <string>

#include "gtest/gtest.h"

namespace raftkv::storage {
namespace {

std::string Bytes(std::initializer_list<int> b) {
  std::string s;
  for (int c : b) s.push_back(static_cast<char>(c));
  return s;
}

// The layout is an on-disk format: pin it byte for byte.
TEST(KeysTest, LocalKeysHaveTheDocumentedBytes) {
  EXPECT_EQ(PrepareBootstrapKey(), Bytes({1, 1}));
  EXPECT_EQ(StoreIdentKey(), Bytes({1, 2}));
  EXPECT_EQ(RaftLogKey(0x0102030405060708, 0x1112131415161718),
            Bytes({1, 2, 1, 2, 3, 4, 5, 6, 7, 8, 1, 0x11, 0x12, 0x13, 0x14,
                   0x15, 0x16, 0x17, 0x18}));
  EXPECT_EQ(RaftLogKey(1, 5).size(), 19u);
  EXPECT_EQ(RaftStateKey(1), Bytes({1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 2}));
  EXPECT_EQ(ApplyStateKey(1), Bytes({1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 3}));
  EXPECT_EQ(RegionStateKey(1), Bytes({1, 3, 0, 0, 0, 0, 0, 0, 0, 1, 1}));
  EXPECT_EQ(DataKey(kCfDefault, "k"), "default_k");
  EXPECT_EQ(DataKey(kCfLock, ""), "lock_");
}

TEST(KeysTest, DedupKeysAreRegionScopedAndBounded) {
  EXPECT_EQ(DedupKey(1, 2),
            Bytes({1, 3, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 2}));
  for (uint64_t client : {0ull, 7ull, ~0ull}) {
    std::string k = DedupKey(5, client);
    EXPECT_GE(k, DedupStartKey(5));
    EXPECT_LT(k, DedupEndKey(5));
    EXPECT_FALSE(k >= DedupStartKey(6) && k < DedupEndKey(6));
  }
  // The region state key of the same region is outside the range.
  EXPECT_LT(RegionStateKey(5), DedupStartKey(5));
  uint64_t v = 0;
  EXPECT_TRUE(DecodeU64(EncodeU64(0x0102030405060708), &v));
  EXPECT_EQ(v, 0x0102030405060708u);
  EXPECT_FALSE(DecodeU64("short", &v));
}

TEST(KeysTest, RaftLogKeysSortByIndexAndStayInTheRegionRange) {
  for (uint64_t region : {1ull, 2ull, 1ull << 40}) {
    std::string start = RaftLogStartKey(region);
    std::string end = RaftLogEndKey(region);
    uint64_t prev_index = 0;
    std::string prev = RaftLogKey(region, 0);
    EXPECT_LE(start, prev);
    for (uint64_t i : {1ull, 2ull, 255ull, 256ull, 1ull << 32, ~0ull}) {
      std::string k = RaftLogKey(region, i);
      EXPECT_LT(prev, k) << prev_index << " vs " << i;
      EXPECT_LT(k, end);
      EXPECT_GE(k, start);
      prev = k;
      prev_index = i;
    }
    // The region's other raft keys and other regions' logs are outside.
    EXPECT_FALSE(RaftStateKey(region) >= start && RaftStateKey(region) < end);
    std::string next_region = RaftLogKey(region + 1, 0);
    EXPECT_GE(next_region, end);
  }
}

TEST(KeysTest, DecodeRaftLogIndexRoundTripsAndRejectsOtherKeys) {
  for (uint64_t i : {0ull, 5ull, 1ull << 33, ~0ull}) {
    auto d = DecodeRaftLogIndex(7, RaftLogKey(7, i));
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(*d, i);
  }
  EXPECT_FALSE(DecodeRaftLogIndex(7, RaftLogKey(8, 1)).ok());
  EXPECT_FALSE(DecodeRaftLogIndex(7, RaftStateKey(7)).ok());
  EXPECT_FALSE(DecodeRaftLogIndex(7, "").ok());
  EXPECT_FALSE(DecodeRaftLogIndex(7, RaftLogKey(7, 1).substr(0, 18)).ok());
}

TEST(KeysTest, DataKeysSortAfterLocalKeysAndStayInTheirCf) {
  EXPECT_LT(StoreIdentKey(), DataKey(kCfDefault, ""));
  EXPECT_LT(RegionStateKey(~0ull), DataKey(kCfDefault, ""));
  for (std::string_view cf : {kCfDefault, kCfLock, kCfWrite}) {
    std::string lo = DataStartKey(cf, "");
    std::string hi = DataEndKey(cf, "");
    for (std::string user : {std::string(""), std::string("a"),
                             std::string("\xff\xff"), std::string(1, '\0')}) {
      std::string k = DataKey(cf, user);
      EXPECT_GE(k, lo);
      EXPECT_LT(k, hi) << cf;
      auto back = DecodeDataKey(cf, k);
      ASSERT_TRUE(back.ok());
      EXPECT_EQ(*back, user);
    }
    // Bounded ranges select exactly [start, end).
    EXPECT_LT(DataKey(cf, "b"), DataEndKey(cf, "c"));
    EXPECT_GE(DataKey(cf, "c"), DataEndKey(cf, "c"));
  }
  // "default" and "default2"-like collisions cannot happen across the three
  // column families: no cf name is a prefix of another followed by '_'.
  EXPECT_FALSE(DecodeDataKey(kCfLock, DataKey(kCfDefault, "x")).ok());
  EXPECT_FALSE(DecodeDataKey(kCfWrite, "write").ok());
  EXPECT_TRUE(IsValidCf("lock"));
  EXPECT_FALSE(IsValidCf("locks"));
}

}  // namespace
}  // namespace raftkv::storage
