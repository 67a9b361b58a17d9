// RaftKvBackend: the KvBackend of a raftkv-server member, on its store's
// StoreDriver.
//
//   writes  (Put, DeleteRange, non-read-only Txn, Compact): validated, then
//           queued; the writes that queue up while the previous command is
//           on its way are proposed together as one raft_cmdpb command (one
//           Etcd request each, each answered from its own response) to the
//           local store, or, when another member's peer leads, forwarded to
//           that member (Forwarder) in one call — once, no further. The
//           leader is remembered from the answers, so a member that does not
//           lead forwards without asking its own store first. A command whose
//           fate is unknown (leadership lost before it applied) is answered
//           etcd's "leader changed"; no leader known is "no leader"; no answer
//           within the request timeout is "request timed out" (all
//           Unavailable).
//   reads   linearizable: Store::ReadIndex (one round for every read that
//           arrives in the same pass), then mvcc::Range / ReadOnlyTxn on the
//           kv engine view the store hands back; serializable: mvcc::Range
//           on a kv engine view taken at once.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "raftstore/store_driver.h"
#include "server/kv_backend.h"

namespace raftkv::server {

struct BackendOptions {
  uint64_t region_id = 1;
  // This member's etcd member id, and every member (for Status and
  // MemberList); a member's store id is its position in `members` plus 1.
  uint64_t member_id = 0;
  std::vector<MemberInfo> members;
  // How long a request may wait for its answer.
  int request_timeout_ms = 5000;
  // Asks the member of a store for its client URLs (which no flag gives):
  // calls back with them, or never on failure. Members() uses it for the
  // members whose client URLs it does not know yet. May be empty.
  std::function<void(uint64_t store_id,
                     std::function<void(std::vector<std::string>)>)>
      fetch_client_urls;
};

// `driver` (running) and `forwarder` must outlive the backend, and the
// driver must be stopped before the backend is destroyed (its answers call
// into the backend). `kv_engine`
// is the store's kv engine (for serializable reads and Status's db size).
std::unique_ptr<KvBackend> NewRaftKvBackend(raftstore::StoreDriver* driver,
                                            storage::Engine* kv_engine,
                                            Forwarder* forwarder,
                                            BackendOptions options);

// Serves a command forwarded by another member (the peer service's
// Forward): proposes it to the local store and answers with its response,
// never forwarding further. Thread-safe; `done` is called once.
void ProposeForwarded(raftstore::StoreDriver* driver,
                      raft_cmdpb::RaftCmdRequest req,
                      std::function<void(raft_cmdpb::RaftCmdResponse)> done);

}  // namespace raftkv::server
