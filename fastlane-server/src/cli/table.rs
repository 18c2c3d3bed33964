//! Aligned columns for people: a header row and left-aligned cells padded
//! to the widest in their column (by characters), two spaces apart. Cells
//! are kept to one line and a long one is cut with `…`.

use std::fmt::Write;

/// The widest a cell is printed.
const MAX_CELL: usize = 60;

/// A table being filled.
#[derive(Debug)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Self {
            rows: vec![headers.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Adds a row (one cell per header).
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows
            .push(cells.into_iter().map(|c| cell(c.into())).collect());
    }

    /// The table as text, a line per row.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|row| row.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut text = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }

    /// Prints the table on stdout.
    pub fn print(&self) {
        out!("{}", self.render());
    }
}

/// One line, at most [`MAX_CELL`] characters.
fn cell(text: String) -> String {
    let line = text.replace(['\n', '\r', '\t'], " ");
    if line.chars().count() <= MAX_CELL {
        return line;
    }
    let mut cut: String = line.chars().take(MAX_CELL - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn columns_line_up_under_their_headers() {
        let mut table = Table::new(&["ID", "STATUS", "COMMAND"]);
        table.row(["a1", "done", "echo hi"]);
        table.row(["b", "running", "sleep 1\nexit 3"]);
        assert_eq!(
            table.render(),
            "ID  STATUS   COMMAND\n\
             a1  done     echo hi\n\
             b   running  sleep 1 exit 3\n"
        );
    }

    #[test]
    fn a_long_cell_is_cut() {
        let mut table = Table::new(&["C"]);
        table.row(["x".repeat(100)]);
        let rendered = table.render();
        let line = rendered.lines().nth(1).unwrap_or_default();
        assert_eq!(line.chars().count(), 60);
        assert!(line.ends_with('…'));
    }
}
