//! The flow table: a hash index over a slab of flows, with one intrusive
//! last-activity list per timeout class and eviction tier. Lookup, insert,
//! touch, expiry of the idle and eviction (the longest-idle flow of the
//! lowest tier) are all O(1) per flow.
//!
//! The index stores only slab positions (4 bytes per flow); keys live in
//! the flows themselves. The slab is chunked ([`Slab`]): it grows a chunk
//! at a time and never moves a flow, so growing never copies the table nor
//! holds twice its size. The list links live apart from the flows, in a
//! dense array: moving a flow to the back of its list touches its
//! neighbours' links, and 8 bytes per flow stay in cache where the flows
//! themselves (a few hundred bytes each) do not. The hash is randomly seeded so a peer cannot choose
//! colliding 5-tuples.

use super::{EvictionTier, Flow, FlowKey, TimeoutClass};
use crate::time::Timestamp;
use hashbrown::HashTable;

const NIL: u32 = u32::MAX;

/// A flow's neighbours in its list.
#[derive(Copy, Clone, Debug)]
struct Link {
    prev: u32,
    next: u32,
}

const UNLINKED: Link = Link {
    prev: NIL,
    next: NIL,
};

#[derive(Copy, Clone, Debug)]
struct List {
    head: u32,
    tail: u32,
}

const EMPTY: List = List {
    head: NIL,
    tail: NIL,
};

/// One list per (tier, class).
const LISTS: usize = EvictionTier::COUNT * TimeoutClass::COUNT;

fn list_of(class: TimeoutClass, tier: EvictionTier) -> usize {
    tier.index() * TimeoutClass::COUNT + class.index()
}

/// A bounded table of flows.
pub struct FlowTable {
    index: HashTable<u32>,
    hasher: ahash::RandomState,
    slots: Slab,
    /// `links[i]` belongs to `slots[i]`.
    links: Vec<Link>,
    free: Vec<u32>,
    lists: [List; LISTS],
    capacity: usize,
}

/// Where a packet's flow lives after [`FlowTable::find_or_insert`].
pub struct Slot {
    pub index: u32,
    pub created: bool,
}

impl FlowTable {
    /// A table for at most `capacity` flows (at least 1). Memory grows with
    /// use, not with the capacity.
    pub fn new(capacity: usize, hasher: ahash::RandomState) -> Self {
        FlowTable {
            index: HashTable::new(),
            hasher,
            slots: Slab::default(),
            links: Vec::new(),
            free: Vec::new(),
            lists: [EMPTY; LISTS],
            capacity: capacity.clamp(1, NIL as usize - 1),
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn hash(&self, key: &FlowKey) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The slot of `key`'s flow, if it is tracked.
    pub fn find(&self, key: &FlowKey) -> Option<u32> {
        let slots = &self.slots;
        self.index
            .find(self.hash(key), |&i| {
                flow_at(slots, i).is_some_and(|f| f.key == *key)
            })
            .copied()
    }

    /// The slot of `key`'s flow, created with `make` if absent. When the
    /// table is full the longest-idle flow of the lowest tier is removed
    /// first and handed to `evicted`.
    pub fn find_or_insert(
        &mut self,
        key: &FlowKey,
        make: impl FnOnce() -> Flow,
        evicted: &mut dyn FnMut(Flow),
    ) -> Slot {
        let hash = self.hash(key);
        let slots = &self.slots;
        let found = self
            .index
            .find(hash, |&i| flow_at(slots, i).is_some_and(|f| f.key == *key));
        if let Some(&index) = found {
            return Slot {
                index,
                created: false,
            };
        }
        if self.len() >= self.capacity {
            if let Some(flow) = self.pop_victim() {
                evicted(flow);
            }
        }
        Slot {
            index: self.insert(hash, make()),
            created: true,
        }
    }

    fn insert(&mut self, hash: u64, node: Flow) -> u32 {
        let (class, tier) = (node.timeout_class(), node.tier);
        let index = match self.free.pop() {
            Some(i) => {
                if let Some(slot) = self.slots.slot_mut(i) {
                    *slot = Some(node);
                }
                i
            }
            None => {
                self.links.push(UNLINKED);
                self.slots.push(node)
            }
        };
        let (hasher, slots) = (&self.hasher, &self.slots);
        self.index.insert_unique(hash, index, |&i| {
            flow_at(slots, i).map_or(0, |f| hasher.hash_one(f.key))
        });
        self.link_tail(index, class, tier);
        index
    }

    pub fn get(&self, index: u32) -> Option<&Flow> {
        flow_at(&self.slots, index)
    }

    /// Every flow in the table, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Flow> {
        self.slots.iter()
    }

    /// Every flow in the table with its slot, in slot order.
    pub fn iter_slots(&self) -> impl Iterator<Item = (u32, &Flow)> {
        self.slots.iter_slots()
    }

    pub fn get_mut(&mut self, index: u32) -> Option<&mut Flow> {
        self.slots.slot_mut(index)?.as_mut()
    }

    /// Records activity: the flow moves to the back of the list of its
    /// (possibly new) class and of `tier`, so each list stays in
    /// last-activity order and expiry and eviction are exact. A flow
    /// already at the back (a burst) stays put. Call after updating the
    /// flow.
    pub fn touch(&mut self, index: u32, tier: EvictionTier) {
        let Some(flow) = self.get(index) else {
            return;
        };
        let class = flow.timeout_class();
        let same = class == flow.class && tier == flow.tier;
        if same && self.lists[list_of(class, tier)].tail == index {
            return;
        }
        self.unlink(index);
        self.link_tail(index, class, tier);
    }

    /// Removes and returns the flow in `index`.
    pub fn remove(&mut self, index: u32) -> Option<Flow> {
        let key = self.get(index)?.key;
        let hash = self.hash(&key);
        if let Ok(entry) = self.index.find_entry(hash, |&i| i == index) {
            entry.remove();
        }
        self.unlink(index);
        let flow = self.slots.slot_mut(index)?.take()?;
        self.free.push(index);
        Some(flow)
    }

    /// Removes and returns one flow of `class` idle at `now` for at least
    /// its tier's `idle_nanos`, oldest first.
    pub fn pop_idle(
        &mut self,
        class: TimeoutClass,
        now: Timestamp,
        idle_nanos: &[u64; EvictionTier::COUNT],
    ) -> Option<Flow> {
        let (_, head) = EvictionTier::ALL
            .into_iter()
            .filter_map(|tier| {
                let head = self.lists[list_of(class, tier)].head;
                let last = self.get(head)?.last();
                (now.since(last) >= idle_nanos[tier.index()]).then_some((last, head))
            })
            .min()?;
        self.remove(head)
    }

    /// Removes and returns the flow idle the longest, over all lists.
    pub fn pop_longest_idle(&mut self) -> Option<Flow> {
        let head = self.oldest(&self.lists)?;
        self.remove(head)
    }

    /// Removes and returns the flow to evict: the longest idle of the
    /// lowest tier that has any.
    pub fn pop_victim(&mut self) -> Option<Flow> {
        let head = self
            .lists
            .chunks_exact(TimeoutClass::COUNT)
            .find_map(|tier| self.oldest(tier))?;
        self.remove(head)
    }

    /// The longest-idle flow at the heads of `lists`.
    fn oldest(&self, lists: &[List]) -> Option<u32> {
        lists
            .iter()
            .filter_map(|l| self.get(l.head).map(|f| (f.last(), l.head)))
            .min()
            .map(|(_, head)| head)
    }

    fn link_tail(&mut self, index: u32, class: TimeoutClass, tier: EvictionTier) {
        let list = &mut self.lists[list_of(class, tier)];
        let old_tail = list.tail;
        list.tail = index;
        if list.head == NIL {
            list.head = index;
        }
        if let Some(tail) = self.links.get_mut(old_tail as usize) {
            tail.next = index;
        }
        if let Some(link) = self.links.get_mut(index as usize) {
            *link = Link {
                prev: old_tail,
                next: NIL,
            };
        }
        if let Some(Some(node)) = self.slots.slot_mut(index) {
            node.class = class;
            node.tier = tier;
        }
    }

    fn unlink(&mut self, index: u32) {
        let (Some(node), Some(&link)) = (self.slots.get(index), self.links.get(index as usize))
        else {
            return;
        };
        let list = &mut self.lists[list_of(node.class, node.tier)];
        match self.links.get_mut(link.prev as usize) {
            Some(p) => p.next = link.next,
            None => list.head = link.next,
        }
        match self.links.get_mut(link.next as usize) {
            Some(n) => n.prev = link.prev,
            None => list.tail = link.prev,
        }
    }
}

fn flow_at(slots: &Slab, index: u32) -> Option<&Flow> {
    slots.get(index)
}

/// Slots of a chunk (a power of two): 1024 flows, about 240 KB.
const CHUNK_BITS: u32 = 10;
const CHUNK: usize = 1 << CHUNK_BITS;

/// The flows, in chunks of [`CHUNK`] slots allocated once at their full
/// size and filled in place: growing adds a chunk (the last one only
/// touches the memory of the slots it has used) and never moves a flow.
/// A slot once pushed stays; an empty one is `None`.
#[derive(Default)]
struct Slab {
    chunks: Vec<Vec<Option<Flow>>>,
}

impl Slab {
    fn slot(&self, index: u32) -> Option<&Option<Flow>> {
        let i = index as usize;
        self.chunks.get(i >> CHUNK_BITS)?.get(i & (CHUNK - 1))
    }

    fn slot_mut(&mut self, index: u32) -> Option<&mut Option<Flow>> {
        let i = index as usize;
        self.chunks
            .get_mut(i >> CHUNK_BITS)?
            .get_mut(i & (CHUNK - 1))
    }

    fn get(&self, index: u32) -> Option<&Flow> {
        self.slot(index)?.as_ref()
    }

    /// Slots pushed so far (used or empty).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }

    /// Adds `flow` in a new slot, returning its index.
    fn push(&mut self, flow: Flow) -> u32 {
        let full = self.chunks.last().is_none_or(|c| c.len() == CHUNK);
        if full {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let n = self.chunks.len() - 1;
        let chunk = &mut self.chunks[n];
        chunk.push(Some(flow));
        ((n << CHUNK_BITS) + chunk.len() - 1) as u32
    }

    fn iter(&self) -> impl Iterator<Item = &Flow> {
        self.chunks.iter().flatten().flatten()
    }

    fn iter_slots(&self) -> impl Iterator<Item = (u32, &Flow)> {
        self.chunks
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, slot)| Some((i as u32, slot.as_ref()?)))
    }
}

#[cfg(test)]
mod tests;
