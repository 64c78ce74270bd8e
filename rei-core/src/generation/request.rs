//! [`GenerationRequest`]: what the user asked for, and its text form kept on the job.

use std::fmt;

use super::assets::AssetKey;
use crate::routing::{Capability, MODEL_LEN_MAX};

/// Longest prompt, in bytes (Telegram's longest message is 4,096 characters; providers cut lower).
pub const PROMPT_LEN_MAX: usize = 8_192;
/// Most input images one request carries (Gemini 3 Pro takes up to 14 references).
pub const INPUT_IMAGES_MAX: usize = 14;
/// Longest provider-side video id a video-to-video request names.
const SOURCE_VIDEO_LEN_MAX: usize = 128;
/// Longest video a request may ask for, in seconds.
const DURATION_MAX_S: u32 = 60;

/// Why a request is refused.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum RequestError {
    /// The prompt is empty (for a capability that needs one) or longer than [`PROMPT_LEN_MAX`].
    #[error("prompt must be 1 to {PROMPT_LEN_MAX} bytes")]
    Prompt,
    /// More than [`INPUT_IMAGES_MAX`] images, or none where the capability needs one, or some where it takes none.
    #[error("{capability:?} takes {expected} input images, got {got}")]
    Images {
        /// The capability.
        capability: Capability,
        /// What it takes.
        expected: &'static str,
        /// How many were given.
        got: usize,
    },
    /// Video-to-video without a source video, or a source video on another capability, or a malformed id.
    #[error(
        "a source video (1 to {SOURCE_VIDEO_LEN_MAX} characters of A-Za-z0-9 _ -) is required for, and only for, video-to-video"
    )]
    SourceVideo,
    /// A duration of 0 or above the longest video, or a duration on an image.
    #[error("duration must be 1 to {DURATION_MAX_S} seconds, and only on video")]
    Duration,
    /// An aspect ratio that is not `W:H` with both sides 1 to 99.
    #[error("aspect ratio must be W:H, e.g. 16:9")]
    AspectRatio,
    /// An image size other than 512, 1K, 2K, 4K.
    #[error("image size must be 512, 1K, 2K or 4K")]
    ImageSize,
    /// A mode other than std or pro.
    #[error("mode must be std or pro")]
    Mode,
    /// A model name that no offer could have.
    #[error("model must be 1 to {MODEL_LEN_MAX} characters of A-Za-z0-9 _ - . : /")]
    Model,
    /// The stored text form could not be read.
    #[error("stored request unreadable: {0}")]
    Encoding(String),
}

/// An aspect ratio, `W:H` with both sides 1 to 99 (`16:9`, `9:16`, `1:1`).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct AspectRatio(String);

impl AspectRatio {
    /// Parses `W:H`.
    ///
    /// # Errors
    /// [`RequestError::AspectRatio`].
    pub fn parse(text: &str) -> Result<AspectRatio, RequestError> {
        let side = |s: &str| !s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit()) && s != "0";
        match text.split_once(':') {
            Some((w, h)) if side(w) && side(h) && !w.starts_with('0') && !h.starts_with('0') => {
                Ok(AspectRatio(text.to_owned()))
            }
            _ => Err(RequestError::AspectRatio),
        }
    }

    /// The text, `W:H`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AspectRatio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The size of a generated image, as Gemini names it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ImageSize {
    /// About 512 px (`"512"`).
    Half,
    /// About 1,024 px (`"1K"`).
    OneK,
    /// About 2,048 px (`"2K"`).
    TwoK,
    /// About 4,096 px (`"4K"`).
    FourK,
}

impl ImageSize {
    /// Parses `512`, `1K`, `2K`, `4K` (the K in either case).
    ///
    /// # Errors
    /// [`RequestError::ImageSize`].
    pub fn parse(text: &str) -> Result<ImageSize, RequestError> {
        match text.to_ascii_uppercase().as_str() {
            "512" | "0.5K" => Ok(ImageSize::Half),
            "1K" => Ok(ImageSize::OneK),
            "2K" => Ok(ImageSize::TwoK),
            "4K" => Ok(ImageSize::FourK),
            _ => Err(RequestError::ImageSize),
        }
    }

    /// The wire name (`512`, `1K`, `2K`, `4K`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ImageSize::Half => "512",
            ImageSize::OneK => "1K",
            ImageSize::TwoK => "2K",
            ImageSize::FourK => "4K",
        }
    }
}

/// Kling's generation mode.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum VideoMode {
    /// Standard: cheaper, faster.
    Std,
    /// Professional: dearer, better.
    Pro,
}

impl VideoMode {
    /// Parses `std` or `pro`.
    ///
    /// # Errors
    /// [`RequestError::Mode`].
    pub fn parse(text: &str) -> Result<VideoMode, RequestError> {
        match text {
            "std" => Ok(VideoMode::Std),
            "pro" => Ok(VideoMode::Pro),
            _ => Err(RequestError::Mode),
        }
    }

    /// The wire name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            VideoMode::Std => "std",
            VideoMode::Pro => "pro",
        }
    }
}

/// What the user asked for. Invariant (checked by [`GenerationRequest::validate`], which every constructor
/// path runs): the prompt, inputs and options fit the capability and every size is bounded.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GenerationRequest {
    /// What is generated.
    pub capability: Capability,
    /// Only offers of this model may serve it (the user picked "Kling 2.6"); `None`: any model of the capability.
    pub model: Option<String>,
    /// The prompt.
    pub prompt: String,
    /// Input images in the asset store: one or more for an edit or image-to-video, none otherwise.
    pub images: Vec<AssetKey>,
    /// The provider's id of the video to continue (Kling's video-extend), for video-to-video.
    pub source_video: Option<String>,
    /// The aspect ratio, when the user chose one.
    pub aspect_ratio: Option<AspectRatio>,
    /// The image size, for images on models that take one.
    pub image_size: Option<ImageSize>,
    /// Seconds of video, for video.
    pub duration_s: Option<u32>,
    /// Kling's mode, for video.
    pub mode: Option<VideoMode>,
}

impl GenerationRequest {
    /// A text-only request for `capability`.
    #[must_use]
    pub fn text(capability: Capability, prompt: &str) -> GenerationRequest {
        GenerationRequest {
            capability,
            model: None,
            prompt: prompt.to_owned(),
            images: Vec::new(),
            source_video: None,
            aspect_ratio: None,
            image_size: None,
            duration_s: None,
            mode: None,
        }
    }

    /// `true` for the video capabilities.
    #[must_use]
    pub fn is_video(&self) -> bool {
        is_video(self.capability)
    }

    /// Checks the invariant.
    ///
    /// # Errors
    /// The first [`RequestError`] found.
    pub fn validate(&self) -> Result<(), RequestError> {
        let needs_prompt = self.capability != Capability::ImageToVideo && self.capability != Capability::VideoToVideo;
        if self.prompt.len() > PROMPT_LEN_MAX || (needs_prompt && self.prompt.trim().is_empty()) {
            return Err(RequestError::Prompt);
        }
        let (min, max, expected) = match self.capability {
            Capability::TextToImage | Capability::TextToVideo | Capability::VideoToVideo => (0, 0, "no"),
            Capability::ImageEdit => (1, INPUT_IMAGES_MAX, "1 to 14"),
            Capability::ImageToVideo => (1, 1, "exactly 1"),
        };
        let got = self.images.len();
        if got < min || got > max {
            return Err(RequestError::Images { capability: self.capability, expected, got });
        }
        let video_id_ok = |id: &String| {
            !id.is_empty()
                && id.len() <= SOURCE_VIDEO_LEN_MAX
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        match (&self.source_video, self.capability) {
            (Some(id), Capability::VideoToVideo) if video_id_ok(id) => {}
            (None, c) if c != Capability::VideoToVideo => {}
            _ => return Err(RequestError::SourceVideo),
        }
        if let Some(d) = self.duration_s
            && (d == 0 || d > DURATION_MAX_S || !self.is_video())
        {
            return Err(RequestError::Duration);
        }
        if self.mode.is_some() && !self.is_video() {
            return Err(RequestError::Mode);
        }
        if self.image_size.is_some() && self.is_video() {
            return Err(RequestError::ImageSize);
        }
        if let Some(model) = &self.model
            && !model_ok(model)
        {
            return Err(RequestError::Model);
        }
        Ok(())
    }

    /// The text form kept on the job: one `name=value` line per set field, values with `\`, newline and carriage
    /// return escaped. Fields unknown to a reader are refused, so a newer writer cannot be half-read.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.prompt.len() + 64);
        let mut line = |name: &str, value: &str| {
            out.push_str(name);
            out.push('=');
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
            out.push('\n');
        };
        line("capability", capability_name(self.capability));
        if let Some(model) = &self.model {
            line("model", model);
        }
        line("prompt", &self.prompt);
        for image in &self.images {
            line("image", image.as_str());
        }
        if let Some(id) = &self.source_video {
            line("source_video", id);
        }
        if let Some(ratio) = &self.aspect_ratio {
            line("aspect_ratio", ratio.as_str());
        }
        if let Some(size) = self.image_size {
            line("image_size", size.as_str());
        }
        if let Some(d) = self.duration_s {
            line("duration_s", &d.to_string());
        }
        if let Some(mode) = self.mode {
            line("mode", mode.as_str());
        }
        out
    }

    /// Reads [`GenerationRequest::encode`]'s form back and validates it.
    ///
    /// # Errors
    /// [`RequestError::Encoding`] for a malformed text, or the validation's error.
    pub fn decode(text: &str) -> Result<GenerationRequest, RequestError> {
        let bad = |why: &str| RequestError::Encoding(why.to_owned());
        let mut capability = None;
        let mut req = GenerationRequest::text(Capability::TextToImage, "");
        for raw in text.split_terminator('\n') {
            let (name, escaped) = raw.split_once('=').ok_or_else(|| bad("a line without ="))?;
            let value = unescape(escaped).ok_or_else(|| bad("a bad escape"))?;
            match name {
                "capability" => capability = Some(parse_capability(&value).ok_or_else(|| bad("unknown capability"))?),
                "model" => req.model = Some(value),
                "prompt" => req.prompt = value,
                "image" => req.images.push(AssetKey::parse(&value).map_err(|_| bad("bad image key"))?),
                "source_video" => req.source_video = Some(value),
                "aspect_ratio" => req.aspect_ratio = Some(AspectRatio::parse(&value)?),
                "image_size" => req.image_size = Some(ImageSize::parse(&value)?),
                "duration_s" => req.duration_s = Some(value.parse().map_err(|_| bad("bad duration"))?),
                "mode" => req.mode = Some(VideoMode::parse(&value)?),
                _ => return Err(bad("unknown field")),
            }
            if req.images.len() > INPUT_IMAGES_MAX {
                return Err(bad("too many images"));
            }
        }
        req.capability = capability.ok_or_else(|| bad("no capability"))?;
        req.validate()?;
        Ok(req)
    }
}

impl fmt::Display for GenerationRequest {
    /// The text form, [`GenerationRequest::encode`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

#[cfg(feature = "serde")]
crate::serde_text::via_text!(GenerationRequest, GenerationRequest::decode);

fn unescape(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next()? {
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// `true` for the video capabilities.
#[must_use]
pub(crate) fn is_video(capability: Capability) -> bool {
    matches!(capability, Capability::TextToVideo | Capability::ImageToVideo | Capability::VideoToVideo)
}

fn model_ok(model: &str) -> bool {
    !model.is_empty()
        && model.len() <= MODEL_LEN_MAX
        && model.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'/'))
}

/// The stable name of a capability (`text_to_image`, …).
#[must_use]
pub(crate) const fn capability_name(capability: Capability) -> &'static str {
    match capability {
        Capability::TextToImage => "text_to_image",
        Capability::ImageEdit => "image_edit",
        Capability::TextToVideo => "text_to_video",
        Capability::ImageToVideo => "image_to_video",
        Capability::VideoToVideo => "video_to_video",
    }
}

pub(crate) fn parse_capability(text: &str) -> Option<Capability> {
    [
        Capability::TextToImage,
        Capability::ImageEdit,
        Capability::TextToVideo,
        Capability::ImageToVideo,
        Capability::VideoToVideo,
    ]
    .into_iter()
    .find(|c| capability_name(*c) == text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> GenerationRequest {
        GenerationRequest {
            capability: Capability::ImageEdit,
            model: Some("gemini-2.5-flash-image".into()),
            prompt: "line one\nline two \\ with = and \r".into(),
            images: vec![AssetKey::parse("inputs/a.png").expect("key"), AssetKey::parse("inputs/b.jpg").expect("key")],
            source_video: None,
            aspect_ratio: Some(AspectRatio::parse("16:9").expect("ratio")),
            image_size: Some(ImageSize::TwoK),
            duration_s: None,
            mode: None,
        }
    }

    #[test]
    fn the_text_form_round_trips() {
        // Proves every field, escapes included, survives encode -> decode.
        let req = full();
        assert_eq!(GenerationRequest::decode(&req.encode()), Ok(req));
        let mut video = GenerationRequest::text(Capability::VideoToVideo, "");
        video.source_video = Some("867283741759111202".into());
        video.duration_s = Some(5);
        video.mode = Some(VideoMode::Pro);
        assert_eq!(GenerationRequest::decode(&video.encode()), Ok(video));
    }

    #[test]
    fn malformed_forms_are_refused() {
        // Proves a reader refuses what it cannot fully understand rather than guessing.
        for text in [
            "",
            "prompt=x\n",
            "capability=teleport\nprompt=x\n",
            "capability=text_to_image\nprompt=a\\q\n",
            "capability=text_to_image\nprompt=x\ncolour=red\n",
            "capability=text_to_image\nprompt x\n",
        ] {
            assert!(GenerationRequest::decode(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn requests_must_fit_their_capability() {
        // Proves inputs and options are checked against the capability.
        let mut edit = full();
        edit.images.clear();
        assert!(matches!(edit.validate(), Err(RequestError::Images { .. })));
        let mut image = GenerationRequest::text(Capability::TextToImage, "a cat");
        assert_eq!(image.validate(), Ok(()));
        image.duration_s = Some(5);
        assert_eq!(image.validate(), Err(RequestError::Duration));
        let v2v = GenerationRequest::text(Capability::VideoToVideo, "");
        assert_eq!(v2v.validate(), Err(RequestError::SourceVideo));
        assert_eq!(GenerationRequest::text(Capability::TextToImage, "  ").validate(), Err(RequestError::Prompt));
        let long = "я".repeat(PROMPT_LEN_MAX);
        assert_eq!(GenerationRequest::text(Capability::TextToImage, &long).validate(), Err(RequestError::Prompt));
        assert!(AspectRatio::parse("16:9").is_ok());
        for bad in ["16", "0:1", "1:0", "100:1", "a:b", "16:09", ":9"] {
            assert!(AspectRatio::parse(bad).is_err(), "{bad}");
        }
    }
}
