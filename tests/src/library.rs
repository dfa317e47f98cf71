//! `library.v1.Library` (tests/proto/library.proto): books on shelves, kept in memory, reached
//! through every form of `google.api.http`. Names are `shelves/{shelf}/books/{book}`; a shelf
//! holds what it is given, up to [`MAX_BOOKS`] books in all.

use std::collections::BTreeMap;
use std::sync::Mutex;

use micro::{Error, Request};

micro::include_proto!("library.v1");

/// The most books the library keeps.
pub const MAX_BOOKS: usize = 10_000;

const ID: &str = "library";

/// The library's state.
#[derive(Default)]
pub struct Library {
    books: Mutex<BTreeMap<String, Book>>,
    counted: Mutex<i64>,
}

fn not_found(name: &str) -> Error {
    Error::not_found(ID, format!("no book {name}"))
}

fn shelf(parent: &str) -> Result<&str, Error> {
    match parent.split('/').collect::<Vec<_>>().as_slice() {
        ["shelves", s] if !s.is_empty() => Ok(parent),
        _ => Err(Error::bad_request(ID, format!("{parent:?} is not a shelf (shelves/{{shelf}})"))),
    }
}

impl Library {
    fn books(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Book>> {
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `book` under its name, refusing when the library is full.
    fn put(&self, book: Book) -> Result<Book, Error> {
        let mut books = self.books();
        if books.len() >= MAX_BOOKS && !books.contains_key(&book.name) {
            return Err(Error::new(ID, 429, "the library is full"));
        }
        books.insert(book.name.clone(), book.clone());
        Ok(book)
    }

    fn existing(&self, name: &str) -> Result<Book, Error> {
        self.books().get(name).cloned().ok_or_else(|| not_found(name))
    }
}

impl LibraryHandler for Library {
    async fn get_book(&self, request: Request<GetBookRequest>) -> Result<Book, Error> {
        let name = &request.name;
        if name.contains('/') {
            return self.existing(name);
        }
        let suffix = format!("/books/{name}");
        self.books().values().find(|b| b.name.ends_with(&suffix)).cloned().ok_or_else(|| not_found(name))
    }

    async fn list_books(&self, request: Request<ListBooksRequest>) -> Result<ListBooksResponse, Error> {
        let prefix = format!("{}/books/", shelf(&request.parent)?);
        let size = if request.page_size <= 0 { 100 } else { request.page_size.min(100) as usize };
        let filter = request.filter.clone().unwrap_or_default();
        let books = self
            .books()
            .values()
            .filter(|b| b.name.starts_with(&prefix))
            .filter(|b| request.tags.iter().all(|t| b.tags.contains(t)))
            .filter(|b| request.genre == 0 || b.genre == request.genre)
            .filter(|b| !filter.available || b.available)
            .filter(|b| request.min_pages.as_ref().is_none_or(|m| b.pages >= m.value))
            .take(size)
            .cloned()
            .collect();
        Ok(ListBooksResponse { books, next_page_token: String::new() })
    }

    async fn create_book(&self, request: Request<CreateBookRequest>) -> Result<Book, Error> {
        let parent = shelf(&request.parent)?.to_string();
        let mut book = request.into_inner().book.unwrap_or_default();
        let id = match book.name.rsplit('/').next() {
            Some(id) if !id.is_empty() => id.to_string(),
            _ => format!("b{}", self.books().len() + 1),
        };
        book.name = format!("{parent}/books/{id}");
        self.put(book)
    }

    async fn update_book(&self, request: Request<UpdateBookRequest>) -> Result<Book, Error> {
        let book = request.into_inner().book.unwrap_or_default();
        self.existing(&book.name)?;
        self.put(book)
    }

    async fn replace_book(&self, request: Request<UpdateBookRequest>) -> Result<Book, Error> {
        self.update_book(request).await
    }

    async fn delete_book(&self, request: Request<GetBookRequest>) -> Result<Nothing, Error> {
        self.books().remove(&request.name).map(|_| Nothing {}).ok_or_else(|| not_found(&request.name))
    }

    async fn publish(&self, request: Request<PublishRequest>) -> Result<Book, Error> {
        let mut book = self.existing(&request.name)?;
        if request.loud {
            book.title = book.title.to_uppercase();
        }
        Ok(book)
    }

    async fn search(&self, request: Request<SearchRequest>) -> Result<ListBooksResponse, Error> {
        let words = request.words.to_lowercase();
        let books =
            self.books().values().filter(|b| b.title.to_lowercase().contains(&words)).take(100).cloned().collect();
        Ok(ListBooksResponse { books, next_page_token: String::new() })
    }

    async fn stat(&self, request: Request<StatRequest>) -> Result<StatRequest, Error> {
        Ok(request.into_inner())
    }

    async fn count(&self, _: Request<Nothing>) -> Result<Counted, Error> {
        let mut n = self.counted.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        Ok(Counted { count: *n })
    }
}
