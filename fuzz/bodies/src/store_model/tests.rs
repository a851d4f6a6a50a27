//! The same model as a proptest, so that every CI run tries fresh sequences, and a check that
//! fuzzer bytes reach every kind of operation.

use proptest::prelude::*;

use arbitrary::Unstructured;
use cos_test_support::rng::pattern;

use super::input::{Op, Payload, Requested, Split};
use super::{CONTENTS, ORIGINS, READ_SLOTS, SLOTS, run};

fn requested() -> impl Strategy<Value = Requested> {
    prop_oneof![
        2 => Just(Requested::Omitted),
        2 => (1u8..32).prop_map(Requested::List),
        1 => Just(Requested::Global),
    ]
}

fn ceiling() -> impl Strategy<Value = u8> {
    prop_oneof![Just(0b1_1111u8), Just(0u8), 0u8..32]
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        8 => Just(Payload::Exact),
        1 => Just(Payload::FlipLast),
        1 => Just(Payload::ExtraByte),
        1 => Just(Payload::DropLast),
        1 => (0..CONTENTS.len()).prop_map(Payload::Other),
        1 => Just(Payload::Oversized),
    ]
}

fn split() -> impl Strategy<Value = Split> {
    prop_oneof![
        2 => Just(Split::Whole),
        1 => (0usize..32).prop_map(Split::InOrder),
        1 => (0usize..32).prop_map(Split::OutOfOrder),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    let origin = 0..ORIGINS.len();
    let content = 0..CONTENTS.len();
    prop_oneof![
        4 => (slot.clone(), origin.clone(), content.clone(), requested(), ceiling()).prop_map(
            |(slot, origin, content, origins, ceiling)| Op::Create { slot, origin, content, origins, ceiling }
        ),
        4 => (slot.clone(), origin.clone(), content.clone(), requested(), ceiling(), split()).prop_map(
            |(slot, origin, content, origins, ceiling, split)| Op::Store { slot, origin, content, origins, ceiling, split }
        ),
        1 => slot.clone().prop_map(|slot| Op::NewWritable { slot }),
        8 => (slot.clone(), payload(), split()).prop_map(|(slot, payload, split)| Op::Write { slot, payload, split }),
        2 => (slot.clone(), 0usize..24, 0usize..4, any::<bool>())
            .prop_map(|(slot, start, len, at_cursor)| Op::Patch { slot, start, len, at_cursor }),
        2 => (slot.clone(), prop_oneof![9 => 0u64..32, 1 => any::<u64>()]).prop_map(|(slot, pos)| Op::Seek { slot, pos }),
        2 => (slot.clone(), prop_oneof![9 => 0u64..28, 1 => any::<u64>()]).prop_map(|(slot, len)| Op::Truncate { slot, len }),
        5 => slot.clone().prop_map(|slot| Op::Close { slot }),
        1 => slot.clone().prop_map(|slot| Op::Abort { slot }),
        6 => (origin.clone(), content.clone()).prop_map(|(origin, content)| Op::Read { origin, content }),
        2 => slot.clone().prop_map(|slot| Op::ReadViaCreateHandle { slot }),
        2 => (0..READ_SLOTS, origin.clone(), content.clone())
            .prop_map(|(slot, origin, content)| Op::OpenRead { slot, origin, content }),
        2 => (0..READ_SLOTS).prop_map(|slot| Op::ReadViaReadHandle { slot }),
        1 => origin.prop_map(|origin| Op::ClearSiteData { origin }),
        1 => any::<bool>().prop_map(|clean| Op::Restart { clean }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn service_matches_the_reference_model(ops in prop::collection::vec(op(), 1..40)) {
        if let Err(disagreement) = run(&ops) {
            return Err(TestCaseError::fail(disagreement));
        }
    }
}

#[test]
fn fuzz_bytes_build_every_kind_of_operation() {
    let data = pattern(1, 16_384);
    let mut u = Unstructured::new(&data);
    let mut kinds = std::collections::HashSet::new();
    while let Ok(op) = <Op as arbitrary::Arbitrary>::arbitrary(&mut u) {
        kinds.insert(std::mem::discriminant(&op));
        if u.is_empty() {
            break;
        }
    }
    assert_eq!(kinds.len(), 15, "every operation kind is reachable from fuzzer bytes");
}
