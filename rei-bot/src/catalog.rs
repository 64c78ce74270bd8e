//! What the bot sells: each image model and each video model with its durations, as the product the price list
//! knows and the model the router must use.

use rei_core::ids::ProductId;

/// An image model on offer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ImageModel {
    /// Its key in button data.
    pub key: String,
    /// Its name for people.
    pub label: String,
    /// The product priced for it.
    pub product: ProductId,
    /// The provider's model that must serve it (`None`: any image model).
    pub model: Option<String>,
}

/// A video model on offer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VideoModel {
    /// Its key in button data.
    pub key: String,
    /// Its name for people.
    pub label: String,
    /// The provider's model that must serve it.
    pub model: String,
    /// Each duration in seconds and its product.
    pub durations: Vec<(u32, ProductId)>,
}

/// The models on offer; the first image model is the one a plain message uses.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Catalog {
    /// Image models.
    pub images: Vec<ImageModel>,
    /// Video models, in the order `/video` offers them.
    pub videos: Vec<VideoModel>,
}

impl Catalog {
    /// Nano Banana for images; Kling 3.0, 2.6 and 1.5 for 5 and 10 s videos, as the shipped price list names them.
    ///
    /// # Panics
    /// Never: the ids are constants that parse.
    #[must_use]
    pub fn shipped() -> Catalog {
        let product = |id: &str| ProductId::parse(id).unwrap_or_else(|e| panic!("invariant broken: {id}: {e}"));
        let video = |key: &str, label: &str, model: &str, version: &str| VideoModel {
            key: key.to_owned(),
            label: label.to_owned(),
            model: model.to_owned(),
            durations: vec![
                (5, product(&format!("video.kling-{version}.5s"))),
                (10, product(&format!("video.kling-{version}.10s"))),
            ],
        };
        Catalog {
            images: vec![ImageModel {
                key: "nano-banana".to_owned(),
                label: "Nano Banana".to_owned(),
                product: product("image.nano-banana"),
                model: None,
            }],
            videos: vec![
                video("kling-3.0", "Kling 3.0", "kling-v3", "3.0"),
                video("kling-2.6", "Kling 2.6", "kling-v2-6", "2.6"),
                video("kling-1.5", "Kling 1.5", "kling-v1-5", "1.5"),
            ],
        }
    }

    /// The video model of `key`.
    #[must_use]
    pub fn video(&self, key: &str) -> Option<&VideoModel> {
        self.videos.iter().find(|v| v.key == key)
    }

    /// Every product the catalogue sells (for checking it against the price list at start-up).
    pub fn products(&self) -> impl Iterator<Item = &ProductId> {
        self.images
            .iter()
            .map(|i| &i.product)
            .chain(self.videos.iter().flat_map(|v| v.durations.iter().map(|(_, p)| p)))
    }
}
