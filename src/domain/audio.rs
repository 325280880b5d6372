//! Audio attachments as a village loudspeaker will play them: every file is decoded once, at
//! upload, so a file no loudspeaker could play is refused while the publisher is still there,
//! and its length is known for the announcement and the preview.

use std::io::Cursor;

use herald_firmware_protocol::command::AudioCodec;
use symphonia::core::{
    codecs::audio::AudioDecoderOptions,
    errors::Error as DecodeError,
    formats::{FormatOptions, FormatReader, TrackType},
    io::{MediaSourceStream, MediaSourceStreamOptions},
};

/// What decoding an audio file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioFacts {
    pub codec: AudioCodec,
    /// Decoded length, rounded down to the millisecond.
    pub duration_ms: u64,
    pub sample_rate: u32,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AudioError {
    #[error("`{0}` is not an audio type a loudspeaker plays")]
    NotAudio(String),
    #[error("the file is not readable {codec} audio: {reason}")]
    Unreadable { codec: &'static str, reason: String },
    #[error("the file holds no {0} audio that decodes")]
    Silent(&'static str),
}

/// The codecs the hub decodes, so accepts as audio and offers to loudspeakers: not Opus,
/// which symphonia cannot decode.
pub fn codec_of(content_type: &str) -> Option<AudioCodec> {
    AudioCodec::from_media_type(content_type).filter(|codec| *codec != AudioCodec::Opus)
}

fn codec_name(codec: AudioCodec) -> &'static str {
    match codec {
        AudioCodec::Mp3 => "MP3",
        AudioCodec::Aac => "AAC",
        AudioCodec::Wav => "WAV",
        AudioCodec::Opus => "Opus",
    }
}

/// Share of packets that may fail to decode (a damaged frame or two in a long recording is
/// heard as a click); past it the file is refused.
const MAX_BAD_PACKET_SHARE: f64 = 0.02;

/// Decodes the whole of `data`, declared as `content_type`, and says what it holds. CPU-bound
/// (MP3 decodes at roughly 190× real time on one core here): the hub's upload runs it on a
/// blocking thread; the simulator, one short file per virtual device, inline as a device would.
pub fn inspect(content_type: &str, data: &[u8]) -> Result<AudioFacts, AudioError> {
    let codec = codec_of(content_type).ok_or_else(|| AudioError::NotAudio(content_type.to_owned()))?;
    let name = codec_name(codec);
    let unreadable = |e: DecodeError| AudioError::Unreadable {
        codec: name,
        reason: e.to_string(),
    };
    let source = MediaSourceStream::new(Box::new(Cursor::new(data)), MediaSourceStreamOptions::default());
    // The declared type picks the reader: a file is what it says it is, or it is refused.
    let formats = FormatOptions::default();
    let mut reader: Box<dyn FormatReader + '_> = match codec {
        AudioCodec::Mp3 => {
            Box::new(symphonia::default::formats::MpaReader::try_new(source, formats).map_err(unreadable)?)
        }
        AudioCodec::Aac => {
            Box::new(symphonia::default::formats::AdtsReader::try_new(source, formats).map_err(unreadable)?)
        }
        AudioCodec::Wav => {
            Box::new(symphonia::default::formats::WavReader::try_new(source, formats).map_err(unreadable)?)
        }
        AudioCodec::Opus => return Err(AudioError::NotAudio(content_type.to_owned())),
    };
    let track = reader
        .default_track(TrackType::Audio)
        .ok_or(AudioError::Silent(name))?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or(AudioError::Silent(name))?
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(unreadable)?;
    let (mut frames, mut packets, mut bad) = (0u64, 0u64, 0u64);
    let mut sample_rate = params.sample_rate.unwrap_or(0);
    loop {
        let packet = match reader.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A truncated last frame ends the file as players end it (and a file with no
            // frames at all is refused below as silent).
            Err(DecodeError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(unreadable(e)),
        };
        if packet.track_id != track_id {
            continue;
        }
        packets += 1;
        match decoder.decode(&packet) {
            Ok(decoded) => {
                frames += decoded.frames() as u64;
                sample_rate = decoded.spec().rate();
            }
            Err(DecodeError::DecodeError(_) | DecodeError::IoError(_)) => bad += 1,
            Err(e) => return Err(unreadable(e)),
        }
    }
    if frames == 0 || sample_rate == 0 {
        return Err(AudioError::Silent(name));
    }
    if bad as f64 > MAX_BAD_PACKET_SHARE * packets as f64 {
        return Err(AudioError::Unreadable {
            codec: name,
            reason: format!("{bad} of {packets} frames do not decode"),
        });
    }
    Ok(AudioFacts {
        codec,
        duration_ms: frames * 1000 / u64::from(sample_rate),
        sample_rate,
    })
}

/// A mono 16-bit PCM WAV file of `millis` of a 440 Hz tone: for tests and benchmarks, so no
/// binary fixture has to be kept.
pub fn tone_wav(millis: u32, sample_rate: u32) -> Vec<u8> {
    let samples = u64::from(millis) * u64::from(sample_rate) / 1000;
    let data_len = u32::try_from(samples * 2).unwrap_or(u32::MAX);
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&sample_rate.to_le_bytes());
    wav.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for n in 0..samples {
        let phase = 2.0 * std::f64::consts::PI * 440.0 * n as f64 / f64::from(sample_rate);
        let sample = (phase.sin() * 8000.0) as i16;
        wav.extend_from_slice(&sample.to_le_bytes());
    }
    wav
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wav_file_decodes_to_its_length() {
        let facts = inspect("audio/wav", &tone_wav(1500, 16_000)).expect("decodes");
        assert_eq!(facts.codec, AudioCodec::Wav);
        assert_eq!(facts.duration_ms, 1500);
        assert_eq!(facts.sample_rate, 16_000);
    }

    #[test]
    fn a_file_that_only_looks_like_audio_is_refused() {
        // Passes the upload's magic-byte check (an ID3 tag), holds no MPEG audio.
        let mut fake = b"ID3\x04\x00\x00\x00\x00\x00\x00".to_vec();
        fake.extend(std::iter::repeat_n(0x55u8, 4096));
        let refused = inspect("audio/mpeg", &fake).expect_err("no audio");
        assert!(
            matches!(
                refused,
                AudioError::Silent("MP3") | AudioError::Unreadable { codec: "MP3", .. }
            ),
            "{refused:?}"
        );
        // A WAV header that promises samples it does not carry.
        let header_only = tone_wav(1000, 8000)[..44].to_vec();
        assert_eq!(inspect("audio/wav", &header_only), Err(AudioError::Silent("WAV")));
        assert!(matches!(
            inspect("audio/wav", b"RIFF\x00\x00\x00\x00WAVEjunk"),
            Err(AudioError::Unreadable { .. })
        ));
    }

    #[test]
    fn only_the_codecs_a_loudspeaker_is_offered_count_as_audio() {
        assert_eq!(
            inspect("application/pdf", b"%PDF-1.7"),
            Err(AudioError::NotAudio("application/pdf".into()))
        );
        for codec in [AudioCodec::Mp3, AudioCodec::Aac, AudioCodec::Wav] {
            assert_eq!(codec_of(codec.media_type()), Some(codec));
        }
        assert_eq!(codec_of("audio/ogg"), None);
    }
}
