//! `words!`: an enum of protocol words with its one spelling, `ALL`, `as_str`, `parse` and
//! `Display`. Every fixed word banger puts on the bus is declared through it.

macro_rules! words {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $word:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The word on the bus.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }

            /// The value this word names, if any.
            pub fn parse(word: &str) -> Option<Self> {
                match word {
                    $($word => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// Checks that every word of an enum parses back to its value and that no two share a word.
#[cfg(test)]
pub(crate) fn check_words<T: Copy + PartialEq + std::fmt::Debug>(
    all: &[T],
    word: fn(T) -> &'static str,
    parse: fn(&str) -> Option<T>,
) {
    let mut seen = std::collections::HashSet::new();
    for v in all {
        assert!(seen.insert(word(*v)), "{v:?} shares its word");
        assert_eq!(parse(word(*v)), Some(*v));
    }
    assert_eq!(parse("no-such-word"), None);
}
