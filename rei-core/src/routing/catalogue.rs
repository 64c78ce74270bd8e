//! The catalogue of offers: what each provider can do, at what cost and quality.

use std::collections::BTreeSet;

use crate::ids::ProviderId;
use crate::money::UnitPrice;

/// Longest model name an [`Offer`] accepts.
pub const MODEL_LEN_MAX: usize = 128;
/// Most offers a [`Catalogue`] holds, so that ranking stays cheap and a bad config cannot grow it unbounded.
pub const OFFERS_MAX: usize = 256;
/// Highest quality score.
const QUALITY_MAX: u8 = 100;

/// What a model can generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// An image from a text prompt.
    TextToImage,
    /// An edited image from an image and a prompt.
    ImageEdit,
    /// A video from a text prompt.
    TextToVideo,
    /// A video from a still image.
    ImageToVideo,
    /// A video from another video.
    VideoToVideo,
}

/// Why an [`Offer`] cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferError {
    /// The model name is empty, too long, or has characters outside `A-Za-z0-9 _ - . : /`.
    #[error("model name must be 1 to {MODEL_LEN_MAX} characters of A-Za-z0-9 _ - . : /")]
    Model,
    /// Quality is a score from 0 to 100.
    #[error("quality {quality} is above {QUALITY_MAX}")]
    Quality {
        /// The rejected score.
        quality: u8,
    },
}

/// One provider's model for one capability. Invariant: the model name is bounded and quality is 0..=100.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    provider: ProviderId,
    model: String,
    capability: Capability,
    unit_cost: UnitPrice,
    quality: u8,
}

impl Offer {
    /// An offer of `model` by `provider` for `capability`, costing `unit_cost` per unit, of `quality` 0..=100.
    ///
    /// # Errors
    /// [`OfferError::Model`] for a bad model name, [`OfferError::Quality`] for a score above 100.
    pub fn new(
        provider: ProviderId,
        model: &str,
        capability: Capability,
        unit_cost: UnitPrice,
        quality: u8,
    ) -> Result<Offer, OfferError> {
        let name_ok = !model.is_empty()
            && model.len() <= MODEL_LEN_MAX
            && model.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'/'));
        if !name_ok {
            return Err(OfferError::Model);
        }
        if quality > QUALITY_MAX {
            return Err(OfferError::Quality { quality });
        }
        Ok(Offer { provider, model: model.to_owned(), capability, unit_cost, quality })
    }

    /// The provider that runs the model.
    #[must_use]
    pub fn provider(&self) -> &ProviderId {
        &self.provider
    }

    /// The provider's model name.
    #[must_use]
    pub fn model(&self) -> &str {
        &self.model
    }

    /// What the offer generates.
    #[must_use]
    pub fn capability(&self) -> Capability {
        self.capability
    }

    /// What the provider charges REI per unit (image, second of video).
    #[must_use]
    pub fn unit_cost(&self) -> UnitPrice {
        self.unit_cost
    }

    /// Quality score, 0..=100, higher is better.
    #[must_use]
    pub fn quality(&self) -> u8 {
        self.quality
    }
}

/// Why a set of offers is not a catalogue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogueError {
    /// More than [`OFFERS_MAX`] offers.
    #[error("catalogue has {count} offers, at most {OFFERS_MAX} are allowed")]
    TooMany {
        /// How many were given.
        count: usize,
    },
    /// The same provider, model and capability appear twice, so their stats and prices would be ambiguous.
    #[error("offer {provider}/{model} for {capability:?} appears twice")]
    Duplicate {
        /// The provider of the repeated offer.
        provider: ProviderId,
        /// Its model.
        model: String,
        /// Its capability.
        capability: Capability,
    },
}

/// A validated set of offers. Invariant: at most [`OFFERS_MAX`] offers, no two with the same provider, model
/// and capability.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Catalogue {
    offers: Vec<Offer>,
}

impl Catalogue {
    /// A catalogue of `offers`, kept in the given order.
    ///
    /// # Errors
    /// [`CatalogueError::TooMany`] past [`OFFERS_MAX`], [`CatalogueError::Duplicate`] for a repeated offer.
    pub fn new(offers: Vec<Offer>) -> Result<Catalogue, CatalogueError> {
        if offers.len() > OFFERS_MAX {
            return Err(CatalogueError::TooMany { count: offers.len() });
        }
        let mut seen = BTreeSet::new();
        for o in &offers {
            if !seen.insert((&o.provider, o.model.as_str(), o.capability)) {
                return Err(CatalogueError::Duplicate {
                    provider: o.provider.clone(),
                    model: o.model.clone(),
                    capability: o.capability,
                });
            }
        }
        Ok(Catalogue { offers })
    }

    /// Every offer, in catalogue order.
    #[must_use]
    pub fn offers(&self) -> &[Offer] {
        &self.offers
    }

    /// The offers for one capability, in catalogue order.
    pub fn offers_for(&self, capability: Capability) -> impl Iterator<Item = &Offer> {
        self.offers.iter().filter(move |o| o.capability == capability)
    }

    /// Every provider named by some offer, each once, in id order.
    #[must_use]
    pub fn providers(&self) -> BTreeSet<&ProviderId> {
        self.offers.iter().map(|o| &o.provider).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(provider: &str, model: &str, capability: Capability) -> Offer {
        let p = ProviderId::parse(provider).expect("test id");
        Offer::new(p, model, capability, UnitPrice::parse("1").expect("price"), 50).expect("offer")
    }

    #[test]
    fn catalogue_refuses_duplicates_and_bad_offers() {
        // Proves the catalogue rejects a repeated provider+model+capability and offers with bad names or quality.
        let dup = Catalogue::new(vec![
            offer("kling", "v2", Capability::TextToVideo),
            offer("kling", "v2", Capability::ImageToVideo),
            offer("kling", "v2", Capability::TextToVideo),
        ]);
        assert!(matches!(dup, Err(CatalogueError::Duplicate { capability: Capability::TextToVideo, .. })));
        let p = ProviderId::parse("gemini").expect("test id");
        let price = UnitPrice::parse("1").expect("price");
        assert_eq!(Offer::new(p.clone(), "", Capability::TextToImage, price, 1), Err(OfferError::Model));
        assert_eq!(Offer::new(p.clone(), "a b", Capability::TextToImage, price, 1), Err(OfferError::Model));
        assert_eq!(Offer::new(p, "m", Capability::TextToImage, price, 101), Err(OfferError::Quality { quality: 101 }));
        let many = (0..=OFFERS_MAX).map(|i| offer("p", &format!("m{i}"), Capability::ImageEdit)).collect();
        assert_eq!(Catalogue::new(many), Err(CatalogueError::TooMany { count: OFFERS_MAX + 1 }));
    }
}
