//! The ecosystem's record layouts in one place: Alpaca's fields, TRL's
//! preference pairs, and chat turns as ShareGPT (`conversations` of
//! `{from, value}`) or chat messages (`messages` of `{role, content}`).
//! The readers (seeds, test sets, exports of any file) and the writers
//! (export, Arena Learning's data) take their names from here.

use serde_json::{Map, Value};

use crate::seeds::{Dialogue, Speaker};

/// Alpaca's fields: the instruction, an input (joined to it when read),
/// the output.
pub const ALPACA: [&str; 3] = ["instruction", "input", "output"];

/// TRL's preference pair: the prompt, the answer chosen, the one rejected.
pub const PREFERENCE: [&str; 3] = ["prompt", "chosen", "rejected"];

/// The names a turn's speaker is read under (`from` in ShareGPT, `role`
/// in chat messages).
pub const SPEAKER_KEYS: [&str; 2] = ["from", "role"];

/// The names a turn's text is read under.
pub const TEXT_KEYS: [&str; 2] = ["value", "content"];

/// How a chat's turns are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatLayout {
    /// `conversations`: `{from, value}` turns, `human` and `gpt`.
    ShareGpt,
    /// `messages`: `{role, content}` turns, `user` and `assistant`.
    Messages,
}

impl ChatLayout {
    pub const ALL: [ChatLayout; 2] = [ChatLayout::ShareGpt, ChatLayout::Messages];

    /// The record's field that holds the turns.
    pub fn field(self) -> &'static str {
        match self {
            ChatLayout::ShareGpt => "conversations",
            ChatLayout::Messages => "messages",
        }
    }

    /// A turn's keys: who speaks, and what is said.
    pub fn keys(self) -> (&'static str, &'static str) {
        match self {
            ChatLayout::ShareGpt => ("from", "value"),
            ChatLayout::Messages => ("role", "content"),
        }
    }

    /// A speaker's name in this layout.
    pub fn speaker(self, speaker: &Speaker) -> &str {
        match (self, speaker) {
            (_, Speaker::System) => "system",
            (ChatLayout::ShareGpt, Speaker::User) => "human",
            (ChatLayout::ShareGpt, Speaker::Assistant) => "gpt",
            (ChatLayout::Messages, Speaker::User) => "user",
            (ChatLayout::Messages, Speaker::Assistant) => "assistant",
            (_, Speaker::Other(name)) => name,
        }
    }

    /// One turn.
    pub fn turn(self, speaker: &Speaker, text: &str) -> Value {
        let (who, what) = self.keys();
        let mut turn = Map::new();
        turn.insert(who.to_string(), Value::String(self.speaker(speaker).to_string()));
        turn.insert(what.to_string(), Value::String(text.to_string()));
        Value::Object(turn)
    }
}

impl Dialogue {
    /// The dialogue's turns in `layout`: the system turn, then each
    /// question and its answer (when it has one).
    pub fn turns(&self, layout: ChatLayout) -> Value {
        let mut turns = Vec::with_capacity(self.exchanges.len() * 2 + 1);
        if let Some(system) = &self.system {
            turns.push(layout.turn(&Speaker::System, system));
        }
        for (question, answer) in &self.exchanges {
            turns.push(layout.turn(&Speaker::User, question));
            if let Some(answer) = answer {
                turns.push(layout.turn(&Speaker::Assistant, answer));
            }
        }
        Value::Array(turns)
    }
}

/// An Alpaca record: the instruction, an empty input, the output.
pub fn alpaca(instruction: &str, output: &str) -> Map<String, Value> {
    let [i, n, o] = ALPACA;
    Map::from_iter([
        (i.to_string(), Value::String(instruction.to_string())),
        (n.to_string(), Value::String(String::new())),
        (o.to_string(), Value::String(output.to_string())),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dialogue_written_in_either_layout_reads_back_as_itself() {
        let dialogue = Dialogue {
            system: Some("簡潔に答えてください。".into()),
            exchanges: vec![("नमस्ते, आप कैसे हैं?".into(), Some("ठीक हूँ".into())), ("และต่อไป?".into(), None)],
        };
        for layout in ChatLayout::ALL {
            let record = Map::from_iter([(layout.field().to_string(), dialogue.turns(layout))]);
            let back = Dialogue::of_chat(&record).unwrap().expect("a chat");
            assert_eq!(back, dialogue, "{layout:?}");
        }
        let turns = dialogue.turns(ChatLayout::ShareGpt);
        assert_eq!(turns[1], serde_json::json!({"from": "human", "value": "नमस्ते, आप कैसे हैं?"}));
        let turns = dialogue.turns(ChatLayout::Messages);
        assert_eq!(turns[2], serde_json::json!({"role": "assistant", "content": "ठीक हूँ"}));
    }

    #[test]
    fn an_alpaca_record_has_its_three_fields() {
        let record = alpaca("Name a prime.", "7");
        assert_eq!(
            Value::Object(record),
            serde_json::json!({"instruction": "Name a prime.", "input": "", "output": "7"})
        );
    }
}
