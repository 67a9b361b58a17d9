// etcd_raft_bench: the raft_core_bench workload (bench/raft_core_bench.cc)
// run against etcd/raft's RawNode, so the two raft cores can be compared on
// one machine.
//
// Three RawNodes in one process on MemoryStorage; messages are delivered at
// once. Node 1 campaigns and becomes leader. Each round the leader proposes
// `batch` entries of 256 bytes, then the group is driven until quiet (no
// Ready on any node and no message in flight), so every entry of the round
// is committed and applied on all three nodes. A Ready is handled as
// persist (snapshot, entries, hard state) -> send -> apply -> Advance, and
// each log is compacted behind its applied index keeping a 4096-entry window.
// The rate reported is entries committed and applied per second of wall time
// spent in rounds (group set-up and warm-up are not timed).
//
// Written for the etcd 3.4 API (go.etcd.io/etcd/raft): NewRawNode(config),
// Ready()/Advance(rd). Build in GOPATH mode:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o build/etcd_raft_bench ./bench/etcd_raft
//
// Each batch size is run -repetitions times, each on a fresh group; the
// median stands for the batch size. The last line printed is
//
//	batch64_entries_per_s=N batch1_entries_per_s=N
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"sort"
	"time"

	"go.etcd.io/etcd/raft"
	pb "go.etcd.io/etcd/raft/raftpb"
)

const (
	numNodes    = 3
	payloadSize = 256
	// Entries kept in each log behind the applied index.
	keepEntries = 4096
)

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "etcd_raft_bench: "+format+"\n", args...)
	os.Exit(2)
}

type group struct {
	storage  [numNodes]*raft.MemoryStorage
	nodes    [numNodes]*raft.RawNode
	inflight []pb.Message
	spare    []pb.Message     // the buffer being delivered, reused next time
	applied  [numNodes]uint64 // highest applied index per node
	normal   [numNodes]uint64 // applied entries carrying a full payload
	checksum uint64
}

func newGroup() *group {
	g := &group{}
	// etcd logs elections at Info level; our core logs nowhere by default.
	quiet := &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}
	voters := make([]uint64, 0, numNodes)
	for i := 1; i <= numNodes; i++ {
		voters = append(voters, uint64(i))
	}
	for i := 0; i < numNodes; i++ {
		s := raft.NewMemoryStorage()
		// The membership is stored as the initial ConfState (the way etcd's
		// docs recommend bootstrapping a RawNode), rather than replicated as
		// conf-change entries by Bootstrap. MemoryStorage can only take a
		// ConfState through a snapshot, and its empty snapshot is at index
		// 0, so the group starts from a snapshot at index 1, term 1.
		snap := pb.Snapshot{Metadata: pb.SnapshotMetadata{
			Index:     1,
			Term:      1,
			ConfState: pb.ConfState{Voters: voters},
		}}
		if err := s.ApplySnapshot(snap); err != nil {
			die("initial snapshot: %v", err)
		}
		n, err := raft.NewRawNode(&raft.Config{
			ID:              uint64(i + 1),
			ElectionTick:    10,
			HeartbeatTick:   1,
			Storage:         s,
			MaxSizePerMsg:   1 << 20,
			MaxInflightMsgs: 256,
			Logger:          quiet,
		})
		if err != nil {
			die("cannot create node %d: %v", i+1, err)
		}
		g.storage[i] = s
		g.nodes[i] = n
		g.applied[i] = 1
	}
	if err := g.nodes[0].Campaign(); err != nil {
		die("campaign: %v", err)
	}
	g.driveUntilQuiet()
	if st := g.nodes[0].BasicStatus(); st.RaftState != raft.StateLeader {
		die("no leader: node 1 is %v", st.RaftState)
	}
	return g
}

func (g *group) leader() *raft.RawNode { return g.nodes[0] }

// driveUntilQuiet handles every Ready and delivers every message until
// nothing is left.
func (g *group) driveUntilQuiet() {
	for busy := true; busy; {
		busy = false
		for i := 0; i < numNodes; i++ {
			if !g.nodes[i].HasReady() {
				continue
			}
			busy = true
			g.handleReady(i)
		}
		if len(g.inflight) > 0 {
			busy = true
			// Swap the two message buffers, so that steady state allocates
			// no new one (the harness should cost as little as it can).
			msgs := g.inflight
			g.inflight, g.spare = g.spare[:0], msgs
			for _, m := range msgs {
				if err := g.nodes[m.To-1].Step(m); err != nil {
					die("step %v to %d: %v", m.Type, m.To, err)
				}
			}
		}
	}
}

func (g *group) handleReady(i int) {
	n := g.nodes[i]
	s := g.storage[i]
	rd := n.Ready()
	// Persist, then send, then apply, then advance.
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := s.ApplySnapshot(rd.Snapshot); err != nil {
			die("snapshot: %v", err)
		}
	}
	if len(rd.Entries) > 0 {
		if err := s.Append(rd.Entries); err != nil {
			die("append: %v", err)
		}
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		if err := s.SetHardState(rd.HardState); err != nil {
			die("hard state: %v", err)
		}
	}
	g.inflight = append(g.inflight, rd.Messages...)
	for _, e := range rd.CommittedEntries {
		// "Apply": touch the payload so the work cannot be optimized away.
		g.checksum += uint64(len(e.Data))
		if e.Type == pb.EntryNormal && len(e.Data) == payloadSize {
			g.normal[i]++
		}
		if e.Index > g.applied[i] {
			g.applied[i] = e.Index
		}
	}
	n.Advance(rd)
	// Like a real application, compact the log behind what was applied,
	// keeping a trailing window for followers that lag a little.
	first, err := s.FirstIndex()
	if err != nil {
		die("first index: %v", err)
	}
	if g.applied[i] > first+2*keepEntries {
		if err := s.Compact(g.applied[i] - keepEntries); err != nil {
			die("compact: %v", err)
		}
	}
}

// round proposes batch entries on the leader and drives the group until
// quiet.
func (g *group) round(payload []byte, batch int) {
	for j := 0; j < batch; j++ {
		if err := g.leader().Propose(payload); err != nil {
			die("proposal refused: %v", err)
		}
	}
	g.driveUntilQuiet()
}

// run does one repetition on a fresh group: warm-up rounds for warmup, then
// rounds until minTime has elapsed. Returns entries applied per second of
// the timed rounds. Aborts unless every node applied every proposal.
func run(batch int, warmup, minTime time.Duration) float64 {
	g := newGroup()
	payload := make([]byte, payloadSize)
	for j := range payload {
		payload[j] = 'x'
	}
	var rounds uint64
	for start := time.Now(); time.Since(start) < warmup; {
		g.round(payload, batch)
		rounds++
	}
	startApplied := g.applied[0]
	var timed uint64
	start := time.Now()
	var elapsed time.Duration
	for {
		g.round(payload, batch)
		timed++
		// Reading the clock every round costs far less than a round.
		if elapsed = time.Since(start); elapsed >= minTime {
			break
		}
	}
	rounds += timed
	proposed := rounds * uint64(batch)
	for i := 0; i < numNodes; i++ {
		if g.applied[i] != g.applied[0] {
			die("node %d applied up to %d, node 1 up to %d", i+1, g.applied[i], g.applied[0])
		}
		if g.normal[i] != proposed {
			die("node %d applied %d of %d proposals", i+1, g.normal[i], proposed)
		}
	}
	if g.checksum != numNodes*proposed*payloadSize {
		die("checksum %d, want %d", g.checksum, numNodes*proposed*payloadSize)
	}
	done := g.applied[0] - startApplied
	if done != timed*uint64(batch) {
		die("timed rounds applied %d entries, want %d", done, timed*uint64(batch))
	}
	return float64(done) / elapsed.Seconds()
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func main() {
	minTime := flag.Duration("min_time", 2*time.Second, "timed rounds per repetition run at least this long")
	warmup := flag.Duration("warmup", 500*time.Millisecond, "untimed rounds before each repetition")
	reps := flag.Int("repetitions", 3, "repetitions per batch size (the median is reported)")
	flag.Parse()
	if *reps < 1 {
		die("-repetitions must be at least 1")
	}

	medians := map[int]float64{}
	for _, batch := range []int{64, 1} {
		rates := make([]float64, 0, *reps)
		for r := 0; r < *reps; r++ {
			rate := run(batch, *warmup, *minTime)
			rates = append(rates, rate)
			fmt.Printf("etcd_raft batch=%d rep=%d entries_per_s=%.0f\n", batch, r+1, rate)
		}
		medians[batch] = median(rates)
		fmt.Printf("etcd_raft batch=%d entries_per_s=%.0f\n", batch, medians[batch])
	}
	fmt.Printf("batch64_entries_per_s=%.0f batch1_entries_per_s=%.0f\n", medians[64], medians[1])
}
