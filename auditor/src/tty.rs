//! The auditor's own terminal during `replay`: raw mode (keys arrive one at a time, unechoed)
//! restored on every way out, and a thread that reads keys.
//!
//! Signals from the keyboard are turned off in raw mode (Ctrl-C arrives as a byte and quits
//! the replay), so the terminal is always restored by [`RawMode`]'s drop rather than left raw
//! by a signal.

use std::io::{self, Read};
use std::sync::mpsc;

use rustix::termios::{
    InputModes, LocalModes, OptionalActions, SpecialCodeIndex, Termios, tcgetattr, tcsetattr,
};

/// Standard input's terminal in raw mode until dropped.
pub(crate) struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts the terminal on standard input in raw mode (output processing kept).
    pub fn enter() -> io::Result<RawMode> {
        let saved = tcgetattr(io::stdin())?;
        let mut raw = saved.clone();
        raw.local_modes &=
            !(LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG | LocalModes::IEXTEN);
        raw.input_modes &= !(InputModes::IXON | InputModes::ICRNL);
        raw.special_codes[SpecialCodeIndex::VMIN] = 1;
        raw.special_codes[SpecialCodeIndex::VTIME] = 0;
        tcsetattr(io::stdin(), OptionalActions::Now, &raw)?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // Best effort: nothing more can be done about a terminal that refuses its settings.
        let _ = tcsetattr(io::stdin(), OptionalActions::Now, &self.saved);
    }
}

/// Bytes typed on standard input, read by a background thread (which ends with stdin).
pub(crate) fn keys() -> mpsc::Receiver<u8> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut stdin = io::stdin().lock();
        let mut byte = [0u8; 1];
        while let Ok(1) = stdin.read(&mut byte) {
            if tx.send(byte[0]).is_err() {
                break;
            }
        }
    });
    rx
}
