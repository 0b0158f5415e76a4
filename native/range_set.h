// A set of address ranges, kept as disjoint [start, end) intervals.
//
// UffdHandle records what it registered for MISSING or MINOR faults, so that a native policy can
// refuse a copy source inside such a range: the event thread itself would fault on the source,
// and only the event thread could resolve that fault, so it would wait for itself forever.
#pragma once

#include <cstdint>
#include <iterator>
#include <map>

class RangeSet {
 public:
  void Add(uint64_t start, uint64_t end) {
    Remove(start, end);
    auto next = ranges_.lower_bound(start);
    // Merge with a neighbour that touches, so the set stays small.
    if (next != ranges_.begin()) {
      auto prev = std::prev(next);
      if (prev->second == start) {
        start = prev->first;
        ranges_.erase(prev);
      }
    }
    if (next != ranges_.end() && next->first == end) {
      end = next->second;
      ranges_.erase(next);
    }
    ranges_[start] = end;
  }

  void Remove(uint64_t start, uint64_t end) {
    auto it = ranges_.lower_bound(start);
    if (it != ranges_.begin() && std::prev(it)->second > start) it = std::prev(it);
    while (it != ranges_.end() && it->first < end) {
      uint64_t s = it->first;
      uint64_t e = it->second;
      it = ranges_.erase(it);
      if (s < start) ranges_[s] = start;
      if (e > end) ranges_[end] = e;
    }
  }

  bool Overlaps(uint64_t start, uint64_t end) const {
    auto it = ranges_.lower_bound(end);  // the first range starting at or after end
    if (it == ranges_.begin()) return false;
    return std::prev(it)->second > start;
  }

 private:
  std::map<uint64_t, uint64_t> ranges_;  // start -> end
};
