//! Slot numbers for the per-client plan.
//!
//! A slot names a client's class (`1:<slot+2>`) and filter item (`<slot+1>`), so the
//! allocator lives with the plan whose handle widths bound it ([`MAX_SLOTS`]): every
//! installed client has its own ids and a removal touches nobody else.

use std::collections::BTreeSet;

use crate::per_client::MAX_SLOTS;

/// Hands out slot numbers `0..capacity`; released slots are reused (lowest first).
#[derive(Debug, Clone)]
pub struct SlotAllocator {
    capacity: u32,
    next: u32,
    free: BTreeSet<u32>,
}

impl SlotAllocator {
    /// At most `capacity` slots (and never more than [`MAX_SLOTS`]).
    pub fn new(capacity: u32) -> Self {
        Self {
            capacity: capacity.min(MAX_SLOTS),
            next: 0,
            free: BTreeSet::new(),
        }
    }
    pub fn alloc(&mut self) -> Option<u32> {
        if let Some(s) = self.free.pop_first() {
            return Some(s);
        }
        if self.next < self.capacity {
            self.next += 1;
            return Some(self.next - 1);
        }
        None
    }
    /// Returns false when the slot was not allocated (double release).
    pub fn release(&mut self, slot: u32) -> bool {
        if slot >= self.next || self.free.contains(&slot) {
            return false;
        }
        self.free.insert(slot);
        true
    }
    pub fn in_use(&self) -> u32 {
        // `free` only holds slots below `next` (≤ MAX_SLOTS), so this neither truncates
        // nor underflows.
        self.next - self.free.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::per_client::{class_minor, filter_item};

    /// Moved from adapter-server's shaping.
    #[test]
    fn allocator() {
        let mut a = SlotAllocator::new(3);
        assert_eq!(a.alloc(), Some(0));
        assert_eq!(a.alloc(), Some(1));
        assert_eq!(a.alloc(), Some(2));
        assert_eq!(a.alloc(), None);
        assert_eq!(a.in_use(), 3);
        assert!(a.release(1));
        assert!(!a.release(1), "double release accepted");
        assert!(!a.release(7), "never allocated slot released");
        assert_eq!(a.in_use(), 2);
        assert_eq!(a.alloc(), Some(1));
        assert_eq!(a.alloc(), None);
        assert!(a.release(2));
        assert!(a.release(0));
        assert_eq!(a.alloc(), Some(0), "lowest free first");
        assert_eq!(a.alloc(), Some(2));
        // capacity bounded by the u32 item field
        let mut big = SlotAllocator::new(u32::MAX);
        for _ in 0..MAX_SLOTS {
            assert!(big.alloc().is_some());
        }
        assert_eq!(big.alloc(), None);
        assert!(filter_item(MAX_SLOTS - 1) <= 0xfff);
        assert!(class_minor(MAX_SLOTS - 1) <= 0xffff);
    }
}
