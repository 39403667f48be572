//! Names for VMs created without one: `<adjective>-<animal>` (`brisk-otter`), short, easy to
//! say and type, and valid hostnames. 64 × 64 words give 4096 names; when the ones drawn are
//! taken, a number is added (`brisk-otter-2`).

use std::io::Read;

use banger_api::ids::VmName;

const ADJECTIVES: [&str; 64] = [
    "amber", "bold", "brave", "brisk", "calm", "clever", "cosy", "crisp", "dapper", "eager",
    "early", "fair", "fancy", "fast", "fond", "frank", "gentle", "glad", "grand", "happy", "hardy",
    "honest", "jolly", "keen", "kind", "lively", "lucky", "merry", "mighty", "mild", "modest",
    "neat", "nimble", "noble", "plucky", "polite", "proud", "quick", "quiet", "rapid", "ready",
    "robust", "rosy", "rustic", "sharp", "shiny", "silent", "sleek", "smart", "snappy", "solid",
    "spry", "steady", "sturdy", "sunny", "swift", "tidy", "trusty", "vivid", "warm", "wise",
    "witty", "zany", "zesty",
];

const ANIMALS: [&str; 64] = [
    "badger", "beaver", "bison", "bobcat", "camel", "cobra", "condor", "coyote", "crane", "dingo",
    "dolphin", "eagle", "falcon", "ferret", "finch", "fox", "gecko", "gibbon", "goose", "heron",
    "hippo", "ibex", "iguana", "jackal", "jaguar", "koala", "lemur", "leopard", "lynx", "magpie",
    "marmot", "mole", "moose", "newt", "ocelot", "orca", "osprey", "otter", "owl", "panda",
    "parrot", "pelican", "puffin", "quail", "rabbit", "raven", "salmon", "seal", "shrew", "sloth",
    "stork", "swan", "tapir", "tiger", "toucan", "trout", "turtle", "viper", "walrus", "weasel",
    "whale", "wolf", "wombat", "yak",
];

/// How many names are drawn at random before a number is added to one.
const DRAWS: usize = 16;

/// A name for a new VM that `taken` does not hold. Random draws first; then the first drawn
/// name with the lowest free number.
pub fn pick(taken: impl Fn(&str) -> bool) -> std::io::Result<VmName> {
    let mut bytes = [0u8; DRAWS * 2];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    pick_from(&bytes, taken)
}

fn pick_from(bytes: &[u8], taken: impl Fn(&str) -> bool) -> std::io::Result<VmName> {
    let name = |pair: &[u8]| {
        format!(
            "{}-{}",
            ADJECTIVES[usize::from(pair[0]) % ADJECTIVES.len()],
            ANIMALS[usize::from(pair[1]) % ANIMALS.len()]
        )
    };
    let drawn: Vec<String> = bytes.chunks_exact(2).map(name).collect();
    let free = drawn.iter().find(|n| !taken(n)).cloned().or_else(|| {
        let first = drawn.first()?;
        (2..=u32::MAX)
            .map(|i| format!("{first}-{i}"))
            .find(|n| !taken(n))
    });
    let free = free.ok_or_else(|| std::io::Error::other("no random bytes to draw a name from"))?;
    VmName::parse(&free).map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_word_makes_a_valid_short_name_and_no_word_repeats() {
        for a in ADJECTIVES {
            for b in ANIMALS {
                let n = format!("{a}-{b}");
                assert!(VmName::parse(&n).is_ok(), "{n}");
                assert!(n.len() <= 16, "{n} is long");
            }
        }
        assert_eq!(ADJECTIVES.iter().collect::<HashSet<_>>().len(), 64);
        assert_eq!(ANIMALS.iter().collect::<HashSet<_>>().len(), 64);
    }

    #[test]
    fn a_taken_name_is_skipped_and_a_number_is_added_when_all_drawn_are_taken() {
        let bytes = [0u8, 0, 1, 1];
        assert_eq!(
            pick_from(&bytes, |_| false).unwrap().as_str(),
            "amber-badger"
        );
        assert_eq!(
            pick_from(&bytes, |n| n == "amber-badger").unwrap().as_str(),
            "bold-beaver"
        );
        let taken = ["amber-badger", "bold-beaver", "amber-badger-2"];
        assert_eq!(
            pick_from(&bytes, |n| taken.contains(&n)).unwrap().as_str(),
            "amber-badger-3"
        );
    }

    #[test]
    fn names_drawn_from_the_system_differ() {
        let names: HashSet<String> = (0..20)
            .map(|_| pick(|_| false).unwrap().to_string())
            .collect();
        assert!(names.len() > 10, "{names:?}");
    }
}
